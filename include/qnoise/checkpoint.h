#pragma once
// Training checkpoints: model, optimizer state, step, torch's CPU random generator and free-form
// metadata (e.g. the model's configuration as JSON), written atomically (temporary file + rename)
// so an interrupted write never destroys the previous checkpoint. Loading them back and carrying
// on gives the same result as never having stopped.
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <map>
#include <string>

namespace qnoise {

struct CheckpointState {
  int64_t step = 0;      // updates done
  int64_t epoch = 0;     // passes over the training data started
  std::string metadata;  // stored as bytes, returned as written
  // Other tensors the run needs to continue exactly (e.g. exact-PQ-noise codebooks); absent from
  // older checkpoints, then loaded empty.
  std::map<std::string, at::Tensor> extras;
};

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointState& state);

// Restores the model's parameters and buffers, the optimizer's state (when given) and the random
// generator. Throws qnoise::Error naming the file when it is missing, corrupt, or does not fit
// the model (a missing tensor or a shape that differs).
// The metadata alone (to learn what a checkpoint holds before building the model to load it into).
std::string read_checkpoint_metadata(const std::string& path);

CheckpointState load_checkpoint(const std::string& path, torch::nn::Module& model,
                                torch::optim::Optimizer* optimizer);

}  // namespace qnoise
