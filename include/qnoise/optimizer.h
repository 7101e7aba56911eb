#pragma once
// Optimizers by name, and the few operations a training loop needs on any of them.
#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

namespace qnoise {

enum class OptimizerKind { Adam, AdamW, SGD };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::AdamW;
  double lr = 1e-3;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-8;  // Adam, AdamW (fairseq's betas)
  double momentum = 0.9;                          // SGD
  bool nesterov = true;                           // SGD
};

// "adam", "adamw" or "sgd".
OptimizerKind parse_optimizer(const std::string& name);

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& parameters,
                                                        const OptimizerOptions& options);

// Sets the learning rate of every parameter group (the schedule's job at each step).
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace qnoise
