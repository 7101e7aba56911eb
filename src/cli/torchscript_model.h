#pragma once
// TorchScript models saved from Python (torch.jit.save), run by the qnoise program: the operator
// library (libqnoise_ops.so) is loaded first, so packed layers (torch.classes.qnoise.PackedLayer)
// that qnoise.load put in the model run on qnoise's kernels.
#include <ATen/core/Tensor.h>
#include <torch/csrc/jit/api/module.h>

#include <string>

namespace qnoise::cli {

// Loads the operator library (once; $QNOISE_OPS_LIBRARY, or beside the program: build/src/ in the
// build tree, ../lib/ when installed) and then the module, in eval mode. Throws qnoise::Error
// naming the file or the library when either cannot be loaded.
torch::jit::Module load_torchscript_model(const std::string& path);

// The module's outputs for float images [n, 1, rows, cols], in batches of `batch`, as class
// probabilities [n, classes] (softmax over its logits). Throws qnoise::Error when the outputs are
// not [batch, classes].
at::Tensor classify_images(torch::jit::Module& module, const at::Tensor& images, int64_t batch = 256);

}  // namespace qnoise::cli
