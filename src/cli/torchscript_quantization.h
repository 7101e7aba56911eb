#pragma once
// Compressing a TorchScript model's Linear, Conv2d and Embedding weights from the qnoise program
// (`qnoise quantize --torchscript`), and putting a .qnz's decoded tensors back into such a model
// (`qnoise eval|predict --torchscript MODEL.pt --weights FILE.qnz`). The scripted model stays the
// architecture; the .qnz holds its tensors, small.
#include <nlohmann/json.hpp>
#include <torch/csrc/jit/api/module.h>

#include <cstdint>
#include <string>

#include "cli/torchscript_tasks.h"
#include "qnoise/qnz_file.h"

namespace qnoise::cli {

struct TorchscriptQuantization {
  std::string scheme = "ipq";  // int8, int4 (per output channel) or ipq
  // ipq: blocks of Linear / Embedding rows and 1x1 convolutions; a k x k kernel is one block.
  int64_t block_size = 8;
  int64_t n_centroids = 256;  // at most, and at most a quarter of a layer's blocks
  // ipq: updates (Adam) of the centroids and the float parameters on `task`'s training data; 0: none.
  int64_t finetune_steps = 0;
  TorchscriptTask task;
  double lr = 1e-4;
};

// Compresses the weights of `module`'s torch.nn Linear, Conv2d and Embedding submodules in place (they
// then hold the decoded values) and returns the file's contents: those weights compressed, every other
// floating-point tensor in float16. Throws qnoise::Error for a model without such layers, a block size
// that does not divide a layer, or an unknown scheme.
CompressedModel quantize_torchscript(torch::jit::Module& module, const TorchscriptQuantization& options,
                                     nlohmann::json& report);

// Decodes every tensor of `file` into `module`'s parameter or buffer of the same name. Throws
// qnoise::Error listing missing, unexpected and mis-shaped tensors.
void load_qnz_into_torchscript(torch::jit::Module& module, const CompressedModel& file, const std::string& path);

}  // namespace qnoise::cli
