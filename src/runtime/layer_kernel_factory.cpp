#include "qnoise/layer_kernel_factory.h"

#include <algorithm>

#include "qnoise/error.h"
#include "runtime/layer_kernels.h"

namespace qnoise {

namespace {

bool all_equal(const std::vector<int64_t>& values, int64_t expected) {
  return std::all_of(values.begin(), values.end(), [&](int64_t v) { return v == expected; });
}

bool pointwise(const CompressedWeight& weight, const LayerGeometry& g) {
  const bool one_by_one = std::all_of(weight.shape.begin() + 2, weight.shape.end(), [](int64_t k) { return k == 1; });
  return one_by_one && all_equal(g.stride, 1) && all_equal(g.padding, 0) && all_equal(g.dilation, 1) && g.groups == 1;
}

// The convolution's parameters, checked to have one value per spatial dimension.
torch::nn::detail::ConvNdOptions<2> conv2d_options(const CompressedWeight& weight, const LayerGeometry& g) {
  for (const auto* values : {&g.stride, &g.padding, &g.dilation})
    QNOISE_CHECK(values->size() == 2, "Conv2d geometry needs 2 values of stride, padding and dilation, got ",
                 shape_to_string(*values));
  const auto& s = weight.shape;
  torch::nn::detail::ConvNdOptions<2> options(s[1] * g.groups, s[0], {s[2], s[3]});
  options.stride({g.stride[0], g.stride[1]})
      .padding(torch::ExpandingArray<2>({g.padding[0], g.padding[1]}))
      .dilation({g.dilation[0], g.dilation[1]})
      .groups(g.groups);
  return options;
}

std::shared_ptr<const LayerKernel> conv2d_kernel(const CompressedWeight& weight, const at::Tensor& bias,
                                                 const LayerGeometry& g, const RuntimeOptions& options) {
  QNOISE_CHECK(weight.shape.size() == 4, "a Conv2d weight must be 4-D, got ", shape_to_string(weight.shape));
  const auto conv_options = conv2d_options(weight, g);
  if (!pointwise(weight, g)) {
    if (!g.zero_padding) return nullptr;
    return std::make_shared<runtime::DecodeOnUseConvKernel>(weight, bias, conv_options);
  }
  std::unique_ptr<PackedLinearBase> packed = runtime::pack_linear(weight, options);
  if (!packed) return nullptr;
  return std::make_shared<runtime::PackedLinearKernel>(std::move(packed), bias, weight.shape, /*conv=*/true);
}

}  // namespace

std::shared_ptr<const LayerKernel> make_layer_kernel(const CompressedWeight& weight, const at::Tensor& bias,
                                                     const LayerGeometry& geometry, const RuntimeOptions& options) {
  switch (geometry.kind) {
    case LayerKind::Embedding:
      QNOISE_CHECK(weight.shape.size() == 2, "an Embedding table must be 2-D, got ", shape_to_string(weight.shape));
      if (weight.scheme == WeightScheme::Float32 || weight.scheme == WeightScheme::Float16) return nullptr;
      if (weight.scheme == WeightScheme::PQ && weight.codes.scalar_type() != at::kByte) return nullptr;
      return std::make_shared<runtime::EmbeddingKernel>(weight, options);
    case LayerKind::Linear: {
      QNOISE_CHECK(weight.shape.size() == 2, "a Linear weight must be 2-D, got ", shape_to_string(weight.shape));
      std::unique_ptr<PackedLinearBase> packed = runtime::pack_linear(weight, options);
      if (!packed) return nullptr;
      return std::make_shared<runtime::PackedLinearKernel>(std::move(packed), bias, weight.shape, /*conv=*/false);
    }
    case LayerKind::Conv2d: return conv2d_kernel(weight, bias, geometry, options);
    case LayerKind::Conv1d: {
      // A Conv1d is a Conv2d of height 1: the same rows, so the same blocks.
      QNOISE_CHECK(weight.shape.size() == 3, "a Conv1d weight must be 3-D, got ", shape_to_string(weight.shape));
      for (const auto* values : {&geometry.stride, &geometry.padding, &geometry.dilation})
        QNOISE_CHECK(values->size() == 1, "Conv1d geometry needs 1 value of stride, padding and dilation, got ",
                     shape_to_string(*values));
      CompressedWeight as_2d = weight;
      as_2d.shape = {weight.shape[0], weight.shape[1], 1, weight.shape[2]};
      if (as_2d.scheme == WeightScheme::PQ) as_2d.layer_kind = LayerKind::Conv2d;
      LayerGeometry g = geometry;
      g.kind = LayerKind::Conv2d;
      g.stride = {1, geometry.stride[0]};
      g.padding = {0, geometry.padding[0]};
      g.dilation = {1, geometry.dilation[0]};
      std::shared_ptr<const LayerKernel> kernel = conv2d_kernel(as_2d, bias, g, options);
      return kernel ? std::make_shared<runtime::Conv1dKernel>(std::move(kernel)) : nullptr;
    }
  }
  throw Error("unknown layer kind");
}

}  // namespace qnoise
