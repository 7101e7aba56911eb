#pragma once
// The kernel for one compressed layer (layer_kernel.h), from its stored weight and what the layer
// computes besides it. The loaders of torch::nn modules (runtime_model.h) and the Python operator
// library's packed layers both build their kernels here.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/compressed_weight.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/runtime_options.h"

namespace qnoise {

struct LayerGeometry {
  LayerKind kind = LayerKind::Linear;
  // Convolutions: one value per spatial dimension (1 for Conv1d, 2 for Conv2d).
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
  bool zero_padding = true;  // false: another padding mode (reflect, ...), which no kernel runs
};

// Linear and pointwise (1x1, stride 1, no padding, one group) convolutions through a packed Linear
// (pq with K <= 256, int8, int4); other zero-padded convolutions decoded on each call; Embedding
// tables through their rows. nullptr where the runtime has no kernel: float schemes, pq with
// K > 256 outside embeddings, padding modes other than zeros. Throws qnoise::Error when the
// geometry does not fit the weight (rank, spatial dimensions) or the CPU lacks options.kernel_path.
std::shared_ptr<const LayerKernel> make_layer_kernel(const CompressedWeight& weight, const at::Tensor& bias,
                                                     const LayerGeometry& geometry, const RuntimeOptions& options);

}  // namespace qnoise
