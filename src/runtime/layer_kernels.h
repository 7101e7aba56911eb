#pragma once
// The LayerKernel implementations the runtime attaches (layer_kernel.h): Linear and 1x1 Conv2d
// layers through a packed Linear (PQ lookup tables, int8, int4), Embedding tables through
// decode_rows, with a packed Linear built on first use when the table is also a tied output layer,
// and the other convolutions decoded on each call.
#include <ATen/core/Tensor.h>
#include <torch/nn/options/conv.h>

#include <memory>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/packed_linear.h"

namespace qnoise::runtime {

// A packed Linear for a pq (uint8 codes), int8 or int4 weight; nullptr for other schemes. Which
// kernel packs which scheme is a table keyed by scheme in layer_kernels.cpp, the runtime's column of
// the core's scheme traits (weight_scheme_traits.h).
std::unique_ptr<PackedLinearBase> pack_linear(const CompressedWeight& weight, const RuntimeOptions& options);

class PackedLinearKernel : public LayerKernel {
 public:
  // conv: the layer is a 1x1 Conv2d (stride 1, no padding, one group) on [N, C, H, W].
  PackedLinearKernel(std::unique_ptr<PackedLinearBase> packed, at::Tensor bias, std::vector<int64_t> weight_shape,
                     bool conv);
  at::Tensor forward(const at::Tensor& input) const override;
  at::Tensor linear(const at::Tensor& input) const override;
  at::Tensor transposed_linear(const at::Tensor& input) const override;
  at::Tensor weight() const override;
  int64_t resident_bytes() const override;

 private:
  at::Tensor apply(const at::Tensor& input, const at::Tensor& bias) const;
  std::unique_ptr<PackedLinearBase> packed_;
  at::Tensor bias_;  // float32 [out] or undefined
  std::vector<int64_t> weight_shape_;
  bool conv_;
};

// An embedding table, also usable as a tied output layer (x E^T). Tables with a packed Linear
// form (PQ with K <= 256, int8, int4) are kept in that form only, which serves both the row
// lookups and the output layer: one copy of the codes. Others (float, PQ with uint16 codes) keep
// the stored form and decode the rows asked for.
class EmbeddingKernel : public LayerKernel {
 public:
  EmbeddingKernel(const CompressedWeight& table, const RuntimeOptions& options);
  at::Tensor forward(const at::Tensor& ids) const override;
  at::Tensor linear(const at::Tensor& input) const override;  // throws without a packed form
  at::Tensor weight() const override;
  int64_t resident_bytes() const override;

 private:
  std::unique_ptr<PackedLinearBase> packed_;  // the table as a Linear [rows, dim], or null
  CompressedWeight table_;                    // only without a packed form
  std::vector<int64_t> shape_;                // [rows, dim]
  WeightScheme scheme_;
};

// A convolution other than 1x1 (the stem, depthwise convolutions) kept as stored, in any scheme, and
// decoded on each call ("decoding per output channel" at the scale of these layers: k x k values per
// channel), so its float weight exists only while it runs. Zero padding only.
class DecodeOnUseConvKernel : public LayerKernel {
 public:
  DecodeOnUseConvKernel(CompressedWeight weight, at::Tensor bias, torch::nn::detail::ConvNdOptions<2> options);
  at::Tensor forward(const at::Tensor& input) const override;
  at::Tensor linear(const at::Tensor& input) const override;  // throws: not a linear layer
  at::Tensor weight() const override;
  int64_t resident_bytes() const override;

 private:
  CompressedWeight weight_;
  at::Tensor bias_;
  torch::nn::detail::ConvNdOptions<2> options_;
};

// A Conv1d run as the Conv2d of height 1 it equals: [N, C, L] in, [N, C', L'] out.
class Conv1dKernel : public LayerKernel {
 public:
  explicit Conv1dKernel(std::shared_ptr<const LayerKernel> conv2d) : conv2d_(std::move(conv2d)) {}
  at::Tensor forward(const at::Tensor& input) const override;
  at::Tensor linear(const at::Tensor& input) const override;  // throws: not a linear layer
  at::Tensor weight() const override { return conv2d_->weight().squeeze(2); }
  int64_t resident_bytes() const override { return conv2d_->resident_bytes(); }

 private:
  std::shared_ptr<const LayerKernel> conv2d_;
};

}  // namespace qnoise::runtime
