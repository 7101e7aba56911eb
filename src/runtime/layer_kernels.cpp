#include "runtime/layer_kernels.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/conv.h>

#include <iterator>

#include "qnoise/embedding_rows.h"
#include "qnoise/error.h"
#include "qnoise/weight_scheme_traits.h"

namespace qnoise::runtime {

namespace {

using Packer = std::unique_ptr<PackedLinearBase> (*)(const CompressedWeight& weight, const RuntimeOptions& options);

template <class Packed>
std::unique_ptr<PackedLinearBase> pack(const CompressedWeight& weight, const RuntimeOptions& options) {
  return std::make_unique<Packed>(weight, options);
}

std::unique_ptr<PackedLinearBase> pack_pq(const CompressedWeight& weight, const RuntimeOptions& options) {
  if (weight.codes.scalar_type() != at::kByte) return nullptr;  // K > 256: no lookup-table kernel
  return pack<PackedPqLinear>(weight, options);
}

// The runtime's column of the scheme traits (weight_scheme_traits.h), which the core layer cannot
// hold: each scheme's packed Linear, or nullptr for none (float weights run as torch's layers do).
struct SchemeKernels {
  WeightScheme scheme;
  Packer pack_linear;
};

constexpr SchemeKernels kSchemeKernels[] = {
    {WeightScheme::Float32, nullptr},
    {WeightScheme::Float16, nullptr},
    {WeightScheme::Int8, pack<PackedInt8Linear>},
    {WeightScheme::Int4, pack<PackedInt4Linear>},
    {WeightScheme::PQ, pack_pq},
};

constexpr bool in_enum_order() {
  for (size_t i = 0; i < std::size(kSchemeKernels); ++i)
    if (kSchemeKernels[i].scheme != kWeightSchemes[i]) return false;
  return true;
}
static_assert(std::size(kSchemeKernels) == kWeightSchemeCount && in_enum_order(), "one entry per scheme, in order");

}  // namespace

std::unique_ptr<PackedLinearBase> pack_linear(const CompressedWeight& weight, const RuntimeOptions& options) {
  const Packer packer = kSchemeKernels[scheme_index(weight.scheme)].pack_linear;
  if (packer == nullptr) return nullptr;
  return packer(weight, options);
}

PackedLinearKernel::PackedLinearKernel(std::unique_ptr<PackedLinearBase> packed, at::Tensor bias,
                                       std::vector<int64_t> weight_shape, bool conv)
    : packed_(std::move(packed)),
      bias_(bias.defined() ? bias.detach().to(at::kFloat).contiguous() : bias),
      weight_shape_(std::move(weight_shape)),
      conv_(conv) {}

at::Tensor PackedLinearKernel::apply(const at::Tensor& input, const at::Tensor& bias) const {
  const int64_t in = packed_->in_features(), out = packed_->out_features();
  if (conv_) {
    QNOISE_CHECK(input.dim() == 4 && input.size(1) == in, "1x1 convolution with ", in, " input channels: input ",
                 input.sizes(), " is not [N, ", in, ", H, W]");
    const int64_t n = input.size(0), h = input.size(2), w = input.size(3);
    // Every pixel is one row of a Linear over the channels.
    const at::Tensor rows = input.permute({0, 2, 3, 1}).reshape({-1, in});
    return packed_->forward(rows, bias).view({n, h, w, out}).permute({0, 3, 1, 2}).contiguous();
  }
  QNOISE_CHECK(input.dim() >= 1 && input.size(-1) == in, "Linear with ", in, " inputs: input ", input.sizes(),
               " does not end in ", in);
  std::vector<int64_t> shape = input.sizes().vec();
  shape.back() = out;
  return packed_->forward(input.reshape({-1, in}), bias).view(shape);
}

at::Tensor PackedLinearKernel::forward(const at::Tensor& input) const { return apply(input, bias_); }

at::Tensor PackedLinearKernel::linear(const at::Tensor& input) const { return apply(input, at::Tensor()); }

at::Tensor PackedLinearKernel::transposed_linear(const at::Tensor& input) const {
  if (conv_) return LayerKernel::transposed_linear(input);
  const int64_t out = packed_->out_features();
  QNOISE_CHECK(input.dim() >= 1 && input.size(-1) == out, "Linear with ", out, " outputs used transposed: input ",
               input.sizes(), " does not end in ", out);
  std::vector<int64_t> shape = input.sizes().vec();
  shape.back() = packed_->in_features();
  return packed_->transposed_forward(input.reshape({-1, out})).view(shape);
}

at::Tensor PackedLinearKernel::weight() const { return packed_->decode().reshape(weight_shape_); }

int64_t PackedLinearKernel::resident_bytes() const {
  return packed_->bytes() + (bias_.defined() ? bias_.numel() * 4 : 0);
}

EmbeddingKernel::EmbeddingKernel(const CompressedWeight& table, const RuntimeOptions& options)
    : shape_(table.shape), scheme_(table.scheme) {
  QNOISE_CHECK(shape_.size() == 2, "embedding table must be 2-D, got ", shape_to_string(shape_));
  packed_ = pack_linear(table, options);
  if (!packed_) table_ = table;
}

at::Tensor EmbeddingKernel::forward(const at::Tensor& ids) const {
  std::vector<int64_t> shape = ids.sizes().vec();
  shape.push_back(shape_[1]);
  return (packed_ ? packed_->decode_rows(ids) : decode_rows(table_, ids)).view(shape);
}

at::Tensor EmbeddingKernel::linear(const at::Tensor& input) const {
  QNOISE_CHECK(packed_ != nullptr, "embedding table stored as ", to_string(scheme_), " has no packed Linear kernel");
  const int64_t dim = shape_[1];
  QNOISE_CHECK(input.dim() >= 1 && input.size(-1) == dim, "tied output layer of dim ", dim, ": input ", input.sizes());
  std::vector<int64_t> shape = input.sizes().vec();
  shape.back() = shape_[0];
  return packed_->forward(input.reshape({-1, dim})).view(shape);
}

at::Tensor EmbeddingKernel::weight() const { return packed_ ? packed_->decode() : table_.decode(); }

int64_t EmbeddingKernel::resident_bytes() const { return packed_ ? packed_->bytes() : table_.stored_bytes(); }

DecodeOnUseConvKernel::DecodeOnUseConvKernel(CompressedWeight weight, at::Tensor bias, torch::nn::detail::ConvNdOptions<2> options)
    : weight_(std::move(weight)),
      bias_(bias.defined() ? bias.detach().to(at::kFloat).contiguous() : bias),
      options_(std::move(options)) {
  QNOISE_CHECK(weight_.shape.size() == 4, "convolution weight must be 4-D, got ", shape_to_string(weight_.shape));
}

at::Tensor DecodeOnUseConvKernel::forward(const at::Tensor& input) const {
  namespace F = torch::nn::functional;
  return F::conv2d(input, weight(), F::Conv2dFuncOptions()
                                        .bias(bias_)
                                        .stride(options_.stride())
                                        .padding(options_.padding())
                                        .dilation(options_.dilation())
                                        .groups(options_.groups()));
}

at::Tensor DecodeOnUseConvKernel::linear(const at::Tensor&) const {
  throw Error("a " + shape_to_string(weight_.shape) + " convolution cannot be used as a linear layer");
}

at::Tensor DecodeOnUseConvKernel::weight() const { return weight_.decode(); }

int64_t DecodeOnUseConvKernel::resident_bytes() const {
  return weight_.stored_bytes() + (bias_.defined() ? bias_.numel() * 4 : 0);
}

at::Tensor Conv1dKernel::forward(const at::Tensor& input) const {
  QNOISE_CHECK(input.dim() == 3, "Conv1d input must be [N, C, L], got ", input.sizes());
  return conv2d_->forward(input.unsqueeze(2)).squeeze(2);
}

at::Tensor Conv1dKernel::linear(const at::Tensor&) const {
  throw Error("a Conv1d layer cannot be used as a linear layer");
}

}  // namespace qnoise::runtime
