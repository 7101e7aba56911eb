#include "qnoise/optimizer.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "qnoise/error.h"

namespace qnoise {

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "adam") return OptimizerKind::Adam;
  if (name == "adamw") return OptimizerKind::AdamW;
  if (name == "sgd") return OptimizerKind::SGD;
  throw Error("unknown optimizer '" + name + "' (expected adam, adamw or sgd)");
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& parameters,
                                                        const OptimizerOptions& options) {
  QNOISE_CHECK(!parameters.empty(), "the optimizer got no parameters to train");
  QNOISE_CHECK(options.lr >= 0 && options.weight_decay >= 0, "learning rate and weight decay must be >= 0");
  switch (options.kind) {
    case OptimizerKind::Adam:
      return std::make_unique<torch::optim::Adam>(
          parameters, torch::optim::AdamOptions(options.lr)
                          .betas({options.beta1, options.beta2})
                          .eps(options.eps)
                          .weight_decay(options.weight_decay));
    case OptimizerKind::AdamW:
      return std::make_unique<torch::optim::AdamW>(
          parameters, torch::optim::AdamWOptions(options.lr)
                          .betas({options.beta1, options.beta2})
                          .eps(options.eps)
                          .weight_decay(options.weight_decay));
    case OptimizerKind::SGD:
      return std::make_unique<torch::optim::SGD>(
          parameters, torch::optim::SGDOptions(options.lr)
                          .momentum(options.momentum)
                          .nesterov(options.nesterov && options.momentum > 0)
                          .weight_decay(options.weight_decay));
  }
  throw Error("unknown optimizer kind");
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace qnoise
