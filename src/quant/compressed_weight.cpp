#include "qnoise/compressed_weight.h"

#include <ATen/ATen.h>

#include "qnoise/block_layout.h"  // shape_to_string
#include "qnoise/error.h"
#include "qnoise/weight_scheme_traits.h"

namespace qnoise {

namespace {

// Checked: a shape read from a file may hold negative or huge dimensions, whose plain product
// could wrap around to a small positive number ([1, 274177, 67280421310721] gave 1).
int64_t product(const std::vector<int64_t>& shape) {
  constexpr int64_t kLargest = int64_t{1} << 40;  // elements; as the safetensors reader allows
  int64_t n = 1;
  for (int64_t d : shape) {
    QNOISE_CHECK(d >= 0 && !__builtin_mul_overflow(n, d, &n) && n <= kLargest, "weight shape ",
                 shape_to_string(shape), " has a negative dimension or over 2^40 elements");
  }
  return n;
}

int64_t tensor_bytes(const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

struct QuantizedCodebook {
  at::Tensor codes;  // uint8 [K, d], one code per value
  float scale = 1.0f;
  int64_t zero_point = 0;
};

QuantizedCodebook quantize_codebook(const at::Tensor& codebook, int bits) {
  const at::Tensor c = codebook.detach().to(at::kCPU, at::kFloat).contiguous();
  // Clipping chosen by squared error: a few outlying centroids would otherwise stretch every step.
  ScalarQuantizer quantizer(
      ScalarQuantizerOptions().set_bits(bits).set_per_channel(false).set_observer(ScalarObserver::MSE));
  const ScalarQParams qparams = quantizer.observe(c);
  return {quantizer.compute_codes(c, qparams).to(at::kByte).reshape(c.sizes()),
          qparams.scale.to(at::kFloat).item<float>(), qparams.zero_point.to(at::kLong).item<int64_t>()};
}

at::Tensor dequantize_codebook(const at::Tensor& codes, float scale, int64_t zero_point) {
  return (codes.to(at::kFloat) - static_cast<float>(zero_point)) * scale;
}

// Each centroid's codes packed two per byte on their own (odd d leaves the last high nibble 0),
// so the tensor keeps K as its first dimension.
at::Tensor pack_codebook_int4(const at::Tensor& codes) {
  const int64_t k = codes.size(0), padded = (codes.size(1) + 1) / 2 * 2;
  const at::Tensor even = at::constant_pad_nd(codes, {0, padded - codes.size(1)}, 0);
  return pack_int4(even.reshape({-1})).reshape({k, padded / 2});
}

at::Tensor unpack_codebook_int4(const at::Tensor& packed, int64_t block_size) {
  const int64_t k = packed.size(0);
  return unpack_int4(packed.reshape({-1}), k * packed.size(1) * 2).reshape({k, -1}).narrow(1, 0, block_size);
}

}  // namespace

void check_centroid_bits(int bits) {
  QNOISE_CHECK(bits == 16 || bits == 8 || bits == 4, "centroids are stored in 16 (float16), 8 or 4 bits, not ", bits);
}

at::Tensor round_centroids(const at::Tensor& codebook, int centroid_bits) {
  check_centroid_bits(centroid_bits);
  if (centroid_bits == 16) return codebook.detach().to(at::kHalf).to(at::kFloat);
  const QuantizedCodebook q = quantize_codebook(codebook, centroid_bits);
  return dequantize_codebook(q.codes, q.scale, q.zero_point).to(codebook.device());
}

int64_t CompressedWeight::numel() const { return product(shape); }

int64_t CompressedWeight::stored_bytes() const {
  const WeightSchemeTraits& t = traits(scheme);
  int64_t bytes = 0;
  for (int i = 0; i < t.n_parts; ++i) bytes += tensor_bytes(this->*t.parts[i].tensor);
  return bytes;
}

void CompressedWeight::validate() const {
  QNOISE_CHECK(!shape.empty() && numel() > 0, "compressed weight with empty shape ", shape_to_string(shape));
  traits(scheme).validate(*this);
}

at::Tensor CompressedWeight::decode() const {
  validate();
  return traits(scheme).decode(*this);
}

at::Tensor CompressedWeight::decoded_centroids() const {
  QNOISE_CHECK(scheme == WeightScheme::PQ, "only pq weights have centroids");
  if (centroid_bits == 16) return centroids.to(at::kFloat);
  const at::Tensor c = centroid_bits == 4 ? unpack_codebook_int4(centroids, block_size) : centroids;
  return dequantize_codebook(c, centroid_scale, centroid_zero_point);
}

CompressedWeight compress_float(const at::Tensor& weight, WeightScheme scheme) {
  QNOISE_CHECK(scheme == WeightScheme::Float32 || scheme == WeightScheme::Float16,
               "compress_float takes float32 or float16, not ", to_string(scheme));
  CompressedWeight w;
  w.scheme = scheme;
  w.shape = weight.sizes().vec();
  w.values = weight.detach().to(at::kCPU, traits(scheme).values_dtype).contiguous();
  return w;
}

CompressedWeight compress_scalar(const at::Tensor& weight, int bits, ScalarObserver observer, bool per_channel) {
  QNOISE_CHECK(bits == 8 || bits == 4, "scalar weights are stored as int8 or int4, not int", bits);
  const at::Tensor w = weight.detach().to(at::kCPU, at::kFloat).contiguous();
  ScalarQuantizer quantizer(
      ScalarQuantizerOptions().set_bits(bits).set_per_channel(per_channel).set_observer(observer));
  const ScalarQParams qparams = quantizer.observe(w);
  const at::Tensor codes = quantizer.compute_codes(w, qparams).reshape({-1});
  const int64_t channels = w.dim() == 0 ? 1 : w.size(0);
  CompressedWeight out;
  out.scheme = bits == 8 ? WeightScheme::Int8 : WeightScheme::Int4;
  out.shape = w.sizes().vec();
  out.codes = bits == 8 ? codes.contiguous() : pack_int4(codes);
  out.scale = qparams.scale.to(at::kFloat).expand({channels}).contiguous();
  out.zero_point = qparams.zero_point.to(at::kByte).expand({channels}).contiguous();
  return out;
}

CompressedWeight compress_pq(const BlockLayout& layout, const at::Tensor& codebook, const at::Tensor& codes,
                             int centroid_bits) {
  check_centroid_bits(centroid_bits);
  CompressedWeight out;
  out.scheme = WeightScheme::PQ;
  out.shape = layout.weight_shape();
  out.layer_kind = layout.kind();
  out.block_size = layout.block_size();
  out.centroid_bits = centroid_bits;
  if (centroid_bits == 16) {
    out.centroids = codebook.detach().to(at::kCPU, at::kHalf).contiguous();
  } else {
    const QuantizedCodebook q = quantize_codebook(codebook, centroid_bits);
    out.centroids = (centroid_bits == 4 ? pack_codebook_int4(q.codes) : q.codes).contiguous();
    out.centroid_scale = q.scale;
    out.centroid_zero_point = q.zero_point;
  }
  out.codes = codes.detach().to(at::kCPU).reshape({-1}).contiguous();
  out.validate();
  return out;
}

}  // namespace qnoise
