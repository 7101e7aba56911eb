#include "qnoise/quant_noise.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/block_mask.h"
#include "noise/parallel_noise.h"
#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"
#include "kernels/affine_qparams.h"

namespace qnoise {

NoiseFunction NoiseFunction::fake_quant(ScalarQuantizerOptions options) {
  ScalarQuantizer check(options);  // validates bits
  NoiseFunction function;
  function.kind = NoiseKind::Scalar;
  function.scalar = options;
  return function;
}

NoiseFunction NoiseFunction::pq_exact(at::Tensor codebook) {
  QNOISE_CHECK(codebook.defined() && codebook.dim() == 2 && codebook.size(0) > 0,
               "pq-exact noise needs a [K, block_size] codebook");
  NoiseFunction function;
  function.kind = NoiseKind::PQExact;
  function.codebook = std::move(codebook);
  return function;
}

NoiseFunction NoiseFunction::parse(const std::string& name) {
  if (name == "pq") return pq();
  QNOISE_CHECK(name != "pq-exact", "pq-exact noise needs a codebook: build it with NoiseFunction::pq_exact");
  if (name.size() >= 4 && name.compare(0, 3, "int") == 0) {
    const std::string digits = name.substr(3);
    QNOISE_CHECK(digits.find_first_not_of("0123456789") == std::string::npos,
                 "unknown noise function '", name, "'");
    return fake_quant(ScalarQuantizerOptions().set_bits(std::stoi(digits)));
  }
  throw Error("unknown noise function '" + name + "' (expected pq, int8, int4 or int<N>)");
}

std::string NoiseFunction::name() const {
  switch (kind) {
    case NoiseKind::PQ: return "pq";
    case NoiseKind::Scalar: return "int" + std::to_string(scalar.bits);
    case NoiseKind::PQExact: return "pq-exact";
  }
  return "unknown";
}

namespace {

void check_arguments(const at::Tensor& weight, const BlockLayout& layout, double rate,
                     const NoiseFunction& function) {
  QNOISE_CHECK(rate >= 0.0 && rate <= 1.0, "Quant-Noise rate must be in [0, 1], got ", rate);
  QNOISE_CHECK(!(function.kind == NoiseKind::PQ && rate >= 1.0),
               "pq noise with rate 1 would zero every block; use pq-exact noise for QAT");
  QNOISE_CHECK(weight.defined() && weight.sizes().vec() == layout.weight_shape(), "Quant-Noise expected a ",
               layout.describe(), ", got shape ",
               weight.defined() ? shape_to_string(weight.sizes().vec()) : std::string("(none)"));
  QNOISE_CHECK(weight.is_floating_point(), "Quant-Noise needs a floating-point weight");
  if (function.kind == NoiseKind::PQExact)
    QNOISE_CHECK(function.codebook.size(1) == layout.block_size(), "pq-exact codebook has blocks of ",
                 function.codebook.size(1), " but the layout is ", layout.describe());
}

at::Tensor nearest_centroids(const at::Tensor& blocks, const at::Tensor& codebook) {
  ProductQuantizer quantizer(codebook.size(1),
                             ProductQuantizerOptions().set_n_centroids(codebook.size(0)));
  quantizer.set_codebook(codebook.to(at::kFloat));
  return quantizer.decode(quantizer.compute_codes(blocks.to(at::kFloat)));
}

// A fresh tensor over the workspace's storage when nobody else holds that storage any more
// (the workspace's own tensor is never handed out, so its storage count is 1 exactly then);
// otherwise new memory, which becomes the workspace.
at::Tensor reuse_or_allocate(at::Tensor* workspace, const at::Tensor& like) {
  const bool reusable = workspace != nullptr && workspace->defined() &&
                        workspace->storage().use_count() == 1 &&
                        workspace->sizes() == like.sizes() &&
                        workspace->scalar_type() == like.scalar_type() &&
                        workspace->device() == like.device();
  if (!reusable) {
    at::Tensor fresh = at::empty(like.sizes(), like.options());
    if (workspace == nullptr) return fresh;
    *workspace = fresh;
  }
  return at::empty({0}, like.options()).set_(workspace->storage(), 0, like.sizes(), workspace->strides());
}

at::Tensor fused_cpu_noise(const at::Tensor& weight, const BlockLayout& layout, double rate,
                           const NoiseFunction& function, uint64_t seed, at::Tensor* workspace) {
  BlockMaskSampler sampler(rate, seed);
  at::Tensor out = reuse_or_allocate(workspace, weight);
  if (function.kind == NoiseKind::PQ) {
    kernels::pq_noise(weight.data_ptr<float>(), out.data_ptr<float>(), layout.n_rows(),
                      layout.row_length(), layout.block_size(), sampler,
                      static_cast<float>(1.0 / (1.0 - rate)));
    return out;
  }
  kernels::ScalarNoiseSpec spec;
  spec.bits = function.scalar.bits;
  spec.symmetric = function.scalar.symmetric;
  // Per-channel min-max ranges are found inside the kernel; other observers run beforehand.
  std::vector<AffineQParams> given;
  if (!function.scalar.per_channel || function.scalar.observer != ScalarObserver::MinMax) {
    ScalarQParams qparams = ScalarQuantizer(function.scalar).observe(weight);
    at::Tensor zero_point = qparams.zero_point.cpu();
    at::Tensor scale = qparams.scale.cpu();
    for (int64_t c = 0; c < qparams.channels(); ++c)
      given.push_back({scale.data_ptr<float>()[c], zero_point.data_ptr<int32_t>()[c]});
    spec.qparams = given.data();
    spec.per_tensor = qparams.channels() == 1;
  }
  const bool finite = kernels::scalar_noise(weight.data_ptr<float>(), out.data_ptr<float>(),
                                            layout.n_rows(), layout.row_length(),
                                            layout.block_size(), spec, sampler);
  QNOISE_CHECK(finite, "cannot quantize a weight that holds NaN or infinite values (",
               layout.describe(), ")");
  return out;
}

at::Tensor noisy_weight(const at::Tensor& weight, const BlockLayout& layout, double rate,
                        const NoiseFunction& function, uint64_t seed, at::Tensor* workspace) {
  const bool fused = weight.device().is_cpu() && weight.scalar_type() == at::kFloat &&
                     weight.is_contiguous() && function.kind != NoiseKind::PQExact;
  if (fused) return fused_cpu_noise(weight, layout, rate, function, seed, workspace);
  at::Tensor mask = quant_noise_mask(layout, rate, seed).to(weight.device());
  return apply_noise_reference(weight, layout, mask, rate, function);
}

// Forward: the noisy weight; backward: the upstream gradient unchanged (straight through), for
// noised and clean blocks alike.
class QuantNoiseFunction : public torch::autograd::Function<QuantNoiseFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& weight,
                            const BlockLayout* layout, double rate, const NoiseFunction* function,
                            uint64_t seed, at::Tensor* workspace) {
    return noisy_weight(weight, *layout, rate, *function, seed, workspace);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grad_outputs) {
    // Moved, not copied: AccumulateGrad can then adopt the buffer as .grad instead of cloning it.
    return {std::move(grad_outputs[0]), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor quant_noise_mask(const BlockLayout& layout, double rate, uint64_t seed) {
  at::Tensor mask = at::empty({layout.n_blocks()}, at::kBool);
  BlockMaskSampler(rate, seed).fill(0, layout.n_blocks(), mask.data_ptr<bool>());
  return mask;
}

at::Tensor apply_noise_reference(const at::Tensor& weight, const BlockLayout& layout,
                                 const at::Tensor& block_mask, double rate,
                                 const NoiseFunction& function) {
  check_arguments(weight, layout, rate, function);
  at::NoGradGuard no_grad;
  switch (function.kind) {
    case NoiseKind::PQ: {
      at::Tensor chosen = layout.expand_per_block(block_mask);
      const auto keep_scale = static_cast<float>(1.0 / (1.0 - rate));
      return at::where(chosen, at::zeros_like(weight), weight * keep_scale);
    }
    case NoiseKind::Scalar: {
      ScalarQuantizer quantizer(function.scalar);
      ScalarQParams qparams = quantizer.observe(weight);
      at::Tensor quantized = quantizer.decode(quantizer.compute_codes(weight, qparams), qparams);
      return at::where(layout.expand_per_block(block_mask), quantized.to(weight.dtype()), weight);
    }
    case NoiseKind::PQExact: {
      at::Tensor blocks = layout.to_blocks(weight).clone();
      at::Tensor chosen = block_mask.nonzero().flatten();
      if (chosen.numel() > 0) {
        at::Tensor replaced = nearest_centroids(blocks.index_select(0, chosen), function.codebook);
        blocks.index_copy_(0, chosen, replaced.to(blocks.dtype()));
      }
      return layout.from_blocks(blocks);
    }
  }
  return weight;
}

at::Tensor quant_noise_with_seed(const at::Tensor& weight, const BlockLayout& layout, double rate,
                                 const NoiseFunction& function, uint64_t seed, at::Tensor* workspace) {
  check_arguments(weight, layout, rate, function);
  return QuantNoiseFunction::apply(weight, &layout, rate, &function, seed, workspace);
}

at::Tensor quant_noise(const at::Tensor& weight, const BlockLayout& layout, double rate,
                       const NoiseFunction& function, bool training) {
  return quant_noise(weight, layout, rate, function, training, nullptr);
}

at::Tensor quant_noise(const at::Tensor& weight, const BlockLayout& layout, double rate,
                       const NoiseFunction& function, bool training, at::Tensor* workspace) {
  check_arguments(weight, layout, rate, function);
  if (!training || rate == 0.0) return weight;
  return QuantNoiseFunction::apply(weight, &layout, rate, &function, draw_noise_seed(), workspace);
}

}  // namespace qnoise
