#pragma once
// Scalar fixed-point quantization (int8, int4, any 2..8 bits): every weight is one block and the
// codebook is the 2^bits levels given by a scale and a zero point, per tensor or per output
// channel (dim 0). Codes are unsigned, in [0, 2^bits - 1]; a code q stands for (q - zero_point) *
// scale. Symmetric quantization fixes zero_point = 2^(bits-1), so +-max|w| map to codes
// 2^bits - 1 and 1.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace qnoise {

enum class ScalarObserver {
  MinMax,  // range = [min(w, 0), max(w, 0)]: no clipping
  MSE,     // range shrunk per channel to minimise the squared error (clips outliers)
};

struct ScalarQuantizerOptions {
  int bits = 8;
  bool symmetric = false;
  bool per_channel = true;
  ScalarObserver observer = ScalarObserver::MinMax;

  ScalarQuantizerOptions& set_bits(int b) { bits = b; return *this; }
  ScalarQuantizerOptions& set_symmetric(bool s) { symmetric = s; return *this; }
  ScalarQuantizerOptions& set_per_channel(bool p) { per_channel = p; return *this; }
  ScalarQuantizerOptions& set_observer(ScalarObserver o) { observer = o; return *this; }
};

// The codebook of a scalar quantizer: one (scale, zero_point) per channel, or one in all.
struct ScalarQParams {
  at::Tensor scale;       // float32 [channels] (channels = 1 when per tensor)
  at::Tensor zero_point;  // int32 [channels], in [0, quant_max()]
  int bits = 8;

  int64_t quant_max() const { return (int64_t{1} << bits) - 1; }
  int64_t channels() const { return scale.numel(); }
  // Smallest and largest representable value of each channel: the clipping range.
  at::Tensor lower() const;
  at::Tensor upper() const;
};

class ScalarQuantizer {
 public:
  // Throws qnoise::Error when bits is outside 2..8.
  explicit ScalarQuantizer(ScalarQuantizerOptions options = {});

  // Chooses scale and zero point for `weight` (any shape; channels along dim 0). Throws
  // qnoise::Error on empty or non-finite weights.
  ScalarQParams observe(const at::Tensor& weight) const;
  // Codes in [0, 2^bits - 1], uint8, same shape as weight.
  at::Tensor compute_codes(const at::Tensor& weight, const ScalarQParams& qparams) const;
  // Float weights rebuilt from codes.
  at::Tensor decode(const at::Tensor& codes, const ScalarQParams& qparams) const;
  // decode(compute_codes(w)) with a straight-through gradient: 1 inside the clipping range,
  // 0 outside it.
  at::Tensor fake_quantize(const at::Tensor& weight, const ScalarQParams& qparams) const;

  const ScalarQuantizerOptions& options() const { return options_; }
  std::string name() const;  // "int8 affine per-channel min-max"

 private:
  // Scale and zero point that make [lower, upper] (per channel) representable.
  ScalarQParams qparams_for_range(const at::Tensor& lower, const at::Tensor& upper) const;
  ScalarQParams search_mse_range(const at::Tensor& rows, const at::Tensor& lower,
                                 const at::Tensor& upper) const;

  ScalarQuantizerOptions options_;
};

// Two 4-bit codes per byte, the even-indexed code in the low nibble; codes must be < 16.
at::Tensor pack_int4(const at::Tensor& codes);
// Inverse of pack_int4: the first `numel` codes, as a flat uint8 tensor.
at::Tensor unpack_int4(const at::Tensor& packed, int64_t numel);

}  // namespace qnoise
