#pragma once
// Loading a compressed model's tensors into an instance of its architecture (any torch module),
// decoded and checked against it.
#include <torch/nn/module.h>

#include <set>
#include <string>
#include <vector>

#include "qnoise/qnz_file.h"

namespace qnoise {

// Decodes every stored tensor into `module`, but those named in `skip` (checked for presence and
// shape, left as they are: a runtime that computes those layers from their compressed form, see
// layer_kernel.h, need not hold them in float). `recomputed_buffers`: buffers the model rebuilds
// itself, not stored. Also enables the int8-activation layers the file calibrated and, when the
// file folded batch norms, resets their statistics to match. Throws qnoise::Error when a tensor
// the model needs is missing, the file has a tensor the model does not, a shape differs, or `skip`
// names a tensor the file does not store.
void load_compressed_tensors(torch::nn::Module& module, const CompressedModel& model,
                             const std::vector<std::string>& recomputed_buffers,
                             const std::set<std::string>& skip = {});

}  // namespace qnoise
