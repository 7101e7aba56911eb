#include "qnoise/scalar_quantizer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <limits>

#include "qnoise/error.h"
#include "kernels/affine_qparams.h"

namespace qnoise {

namespace {

// The MSE observer tries clipping ranges alpha * [min, max] for alpha = 1, 0.99, ..., 0.20.
constexpr int kMseGridSteps = 81;
constexpr double kMseGridStep = 0.01;

void check_weight(const at::Tensor& weight) {
  QNOISE_CHECK(weight.defined() && weight.numel() > 0, "cannot quantize an empty weight");
  QNOISE_CHECK(weight.is_floating_point(), "cannot quantize a weight of dtype ",
               weight.scalar_type(), ": expected a floating-point tensor");
}

// min and max propagate NaN and infinities, so checking them checks every weight without
// another pass over the tensor (observe runs in every Quant-Noise forward).
void check_finite(const at::Tensor& row_min, const at::Tensor& row_max) {
  QNOISE_CHECK(at::isfinite(row_min).all().item<bool>() && at::isfinite(row_max).all().item<bool>(),
               "cannot quantize a weight that holds NaN or infinite values");
}

// The weight as [channels, values per channel] float32 rows.
at::Tensor as_channel_rows(const at::Tensor& weight, int64_t channels) {
  QNOISE_CHECK(channels == 1 || (weight.dim() >= 1 && weight.size(0) == channels),
               "quantization parameters for ", channels, " channels do not fit a weight of ",
               weight.size(0), " channels");
  return weight.to(at::kFloat).reshape({channels, -1});
}

at::Tensor column(const at::Tensor& per_channel) { return per_channel.reshape({-1, 1}); }

// decode(compute_codes(w)) forward; gradient 1 where w is inside the clipping range.
class FakeQuantizeFunction : public torch::autograd::Function<FakeQuantizeFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& weight,
                            const ScalarQuantizer* quantizer, const ScalarQParams* qparams) {
    at::Tensor rows = as_channel_rows(weight, qparams->channels());
    at::Tensor inside = rows.ge(column(qparams->lower())).logical_and_(rows.le(column(qparams->upper())));
    ctx->save_for_backward({inside.reshape(weight.sizes())});
    return quantizer->decode(quantizer->compute_codes(weight, *qparams), *qparams).to(weight.dtype());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    at::Tensor inside = ctx->get_saved_variables()[0];
    return {grad_outputs[0] * inside, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor ScalarQParams::lower() const { return (-zero_point.to(at::kFloat)) * scale; }

at::Tensor ScalarQParams::upper() const {
  return (static_cast<float>(quant_max()) - zero_point.to(at::kFloat)) * scale;
}

ScalarQuantizer::ScalarQuantizer(ScalarQuantizerOptions options) : options_(options) {
  QNOISE_CHECK(options.bits >= 2 && options.bits <= 8, "scalar quantization needs 2 to 8 bits, got ",
               options.bits);
}

std::string ScalarQuantizer::name() const {
  return "int" + std::to_string(options_.bits) + (options_.symmetric ? " symmetric" : " affine") +
         (options_.per_channel ? " per-channel" : " per-tensor") +
         (options_.observer == ScalarObserver::MinMax ? " min-max" : " mse");
}

ScalarQParams ScalarQuantizer::qparams_for_range(const at::Tensor& lower,
                                                 const at::Tensor& upper) const {
  // A few numbers per channel: computed on the CPU with the same arithmetic as the fused kernels.
  at::Tensor lower_cpu = lower.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor upper_cpu = upper.to(at::kCPU, at::kFloat).contiguous();
  const int64_t channels = lower_cpu.numel();
  at::Tensor scale = at::empty({channels}, at::kFloat);
  at::Tensor zero_point = at::empty({channels}, at::kInt);
  const float* lowers = lower_cpu.data_ptr<float>();
  const float* uppers = upper_cpu.data_ptr<float>();
  float* scales = scale.data_ptr<float>();
  int32_t* zero_points = zero_point.data_ptr<int32_t>();
  for (int64_t c = 0; c < channels; ++c) {
    const AffineQParams channel =
        qnoise::qparams_for_range(lowers[c], uppers[c], options_.bits, options_.symmetric);
    scales[c] = channel.scale;
    zero_points[c] = channel.zero_point;
  }
  ScalarQParams qparams;
  qparams.bits = options_.bits;
  qparams.scale = scale.to(lower.device());
  qparams.zero_point = zero_point.to(lower.device());
  return qparams;
}

ScalarQParams ScalarQuantizer::observe(const at::Tensor& weight) const {
  check_weight(weight);
  const int64_t channels = options_.per_channel ? weight.size(0) : 1;
  at::Tensor rows = as_channel_rows(weight.detach(), channels);
  auto [row_min, row_max] = at::aminmax(rows, 1);
  check_finite(row_min, row_max);
  // The range always holds 0, so zero weights (padding, pruned rows) are represented exactly.
  at::Tensor lower = row_min.clamp_max(0);
  at::Tensor upper = row_max.clamp_min(0);
  if (options_.observer == ScalarObserver::MSE) return search_mse_range(rows, lower, upper);
  return qparams_for_range(lower, upper);
}

ScalarQParams ScalarQuantizer::search_mse_range(const at::Tensor& rows, const at::Tensor& lower,
                                                const at::Tensor& upper) const {
  at::Tensor best_error = at::full_like(lower, std::numeric_limits<float>::infinity());
  at::Tensor best_lower = lower.clone();
  at::Tensor best_upper = upper.clone();
  for (int step = 0; step < kMseGridSteps; ++step) {
    const double alpha = 1.0 - step * kMseGridStep;
    at::Tensor candidate_lower = lower * alpha;
    at::Tensor candidate_upper = upper * alpha;
    ScalarQParams candidate = qparams_for_range(candidate_lower, candidate_upper);
    at::Tensor error = (rows - decode(compute_codes(rows, candidate), candidate)).square_().sum(1);
    at::Tensor better = error < best_error;
    best_error = at::where(better, error, best_error);
    best_lower = at::where(better, candidate_lower, best_lower);
    best_upper = at::where(better, candidate_upper, best_upper);
  }
  return qparams_for_range(best_lower, best_upper);
}

at::Tensor ScalarQuantizer::compute_codes(const at::Tensor& weight,
                                          const ScalarQParams& qparams) const {
  at::NoGradGuard no_grad;
  at::Tensor rows = as_channel_rows(weight, qparams.channels());
  // Multiply by the reciprocal, as the fused Quant-Noise kernel does, so both give equal codes.
  at::Tensor inverse_scale = column(1.0f / qparams.scale);
  at::Tensor codes = (rows * inverse_scale).round_().add_(column(qparams.zero_point.to(at::kFloat)));
  return codes.clamp_(0, static_cast<double>(qparams.quant_max())).to(at::kByte).reshape(weight.sizes());
}

at::Tensor ScalarQuantizer::decode(const at::Tensor& codes, const ScalarQParams& qparams) const {
  QNOISE_CHECK(codes.defined() && !codes.is_floating_point(), "scalar codes must be integers");
  at::Tensor rows = as_channel_rows(codes, qparams.channels());
  at::Tensor values = rows.sub(column(qparams.zero_point.to(at::kFloat))).mul_(column(qparams.scale));
  return values.reshape(codes.sizes());
}

at::Tensor ScalarQuantizer::fake_quantize(const at::Tensor& weight,
                                          const ScalarQParams& qparams) const {
  return FakeQuantizeFunction::apply(weight, this, &qparams);
}

at::Tensor pack_int4(const at::Tensor& codes) {
  QNOISE_CHECK(codes.defined() && codes.scalar_type() == at::kByte, "int4 packing takes uint8 codes");
  at::Tensor flat = codes.flatten();
  QNOISE_CHECK(flat.numel() == 0 || flat.max().item<int64_t>() < 16,
               "int4 packing needs codes below 16, got ", flat.max().item<int64_t>());
  if (flat.numel() % 2 == 1) flat = at::cat({flat, at::zeros({1}, flat.options())});
  at::Tensor pairs = flat.reshape({-1, 2});
  return pairs.select(1, 0).bitwise_or(pairs.select(1, 1).bitwise_left_shift(4)).contiguous();
}

at::Tensor unpack_int4(const at::Tensor& packed, int64_t numel) {
  QNOISE_CHECK(packed.defined() && packed.scalar_type() == at::kByte, "int4 unpacking takes uint8 bytes");
  QNOISE_CHECK(packed.numel() == (numel + 1) / 2, "packed int4 data holds ", packed.numel(),
               " bytes, expected ", (numel + 1) / 2, " for ", numel, " codes");
  at::Tensor flat = packed.flatten();
  at::Tensor pairs = at::stack({flat.bitwise_and(15), flat.bitwise_right_shift(4)}, 1);
  return pairs.flatten().slice(0, 0, numel).contiguous();
}

}  // namespace qnoise
