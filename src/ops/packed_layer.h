#pragma once
// torch.classes.qnoise.PackedLayer: a Linear, Embedding, Conv1d or Conv2d layer computed from its
// compressed weight by the runtime's kernels (PQ lookup tables, int8 and int4 kernels, embedding
// rows decoded on lookup; other convolutions decoded on each call), with its bias and, when int8
// activations were calibrated, its input quantization. Its state is the compressed weight, the
// geometry and the runtime options, so scripted models holding it save and load with
// torch.jit.save / torch.jit.load; the kernels are rebuilt on load.
#include <ATen/core/Tensor.h>
#include <torch/custom_class.h>

#include <memory>
#include <string>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/layer_kernel_factory.h"
#include "qnoise/runtime_options.h"

namespace qnoise::ops {

struct PackedLayerConfig {
  CompressedWeight weight;
  at::Tensor bias;         // float32 [out] or undefined
  LayerGeometry geometry;  // kind, and the convolutions' stride, padding, dilation, groups
  at::Tensor input_quant;  // int8 activations' calibrated state (activation_quant.h) or undefined
  RuntimeOptions options;  // kernel path and int8 activations (tuning stays at its defaults)
};

class PackedLayer : public torch::CustomClassHolder {
 public:
  // Throws qnoise::Error for a kind it does not know, a geometry that does not fit the weight, or
  // options the CPU cannot run.
  explicit PackedLayer(PackedLayerConfig config);
  at::Tensor forward(const at::Tensor& input) const;
  const PackedLayerConfig& config() const { return config_; }
  const LayerKernel& kernel() const { return *kernel_; }

 private:
  PackedLayerConfig config_;
  std::shared_ptr<const LayerKernel> kernel_;
};

}  // namespace qnoise::ops
