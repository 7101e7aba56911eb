#include "qnoise/compressed_weight.h"

#include <ATen/ATen.h>

#include <cmath>

#include "qnoise/error.h"

namespace qnoise {

namespace {

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t tensor_bytes(const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

void check_tensor(const at::Tensor& t, at::ScalarType dtype, int64_t numel, const char* what,
                  const CompressedWeight& w) {
  QNOISE_CHECK(t.defined() && t.scalar_type() == dtype && t.numel() == numel, to_string(w.scheme), " weight of shape ",
               shape_to_string(w.shape), ": ", what, " must be ", c10::toString(dtype), " with ", numel,
               " elements, got ", t.defined() ? std::string(c10::toString(t.scalar_type())) + " with " + std::to_string(t.numel()) : "none");
}

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

std::string to_string(WeightScheme scheme) {
  switch (scheme) {
    case WeightScheme::Float32: return "float32";
    case WeightScheme::Float16: return "float16";
    case WeightScheme::Int8: return "int8";
    case WeightScheme::Int4: return "int4";
    case WeightScheme::PQ: return "pq";
  }
  return "?";
}

WeightScheme parse_weight_scheme(const std::string& name) {
  for (auto scheme : {WeightScheme::Float32, WeightScheme::Float16, WeightScheme::Int8, WeightScheme::Int4, WeightScheme::PQ})
    if (to_string(scheme) == name) return scheme;
  throw Error("unknown weight scheme '" + name + "' (float32, float16, int8, int4 or pq)");
}

int64_t CompressedWeight::numel() const { return product(shape); }

int64_t CompressedWeight::stored_bytes() const {
  return tensor_bytes(values) + tensor_bytes(codes) + tensor_bytes(scale) + tensor_bytes(zero_point) +
         tensor_bytes(centroids);
}

void CompressedWeight::validate() const {
  QNOISE_CHECK(!shape.empty() && numel() > 0, "compressed weight with empty shape ", shape_to_string(shape));
  const int64_t n = numel();
  switch (scheme) {
    case WeightScheme::Float32:
    case WeightScheme::Float16:
      check_tensor(values, scheme == WeightScheme::Float32 ? at::kFloat : at::kHalf, n, "values", *this);
      return;
    case WeightScheme::Int8:
    case WeightScheme::Int4: {
      const int bits = scheme == WeightScheme::Int8 ? 8 : 4;
      check_tensor(codes, at::kByte, bits == 8 ? n : (n + 1) / 2, "codes", *this);
      check_tensor(scale, at::kFloat, shape[0], "scale", *this);
      check_tensor(zero_point, at::kByte, shape[0], "zero_point", *this);
      QNOISE_CHECK(scale.isfinite().all().item<bool>() && scale.gt(0).all().item<bool>(), to_string(scheme),
                   " weight: scales must be finite and positive");
      QNOISE_CHECK(zero_point.le((1 << bits) - 1).all().item<bool>(), to_string(scheme),
                   " weight: zero point beyond ", (1 << bits) - 1);
      return;
    }
    case WeightScheme::PQ: {
      const BlockLayout layout = this->layout();  // throws when block_size does not divide a row
      check_centroid_bits(centroid_bits);
      const int64_t stored_width = centroid_bits == 4 ? (block_size + 1) / 2 : block_size;
      const at::ScalarType stored_dtype = centroid_bits == 16 ? at::kHalf : at::kByte;
      QNOISE_CHECK(centroids.defined() && centroids.dim() == 2 && centroids.scalar_type() == stored_dtype &&
                       centroids.size(1) == stored_width && centroids.size(0) >= 1 && centroids.size(0) <= 65536,
                   "pq weight of shape ", shape_to_string(shape), ": centroids in ", centroid_bits, " bits must be ",
                   c10::toString(stored_dtype), " [K, ", stored_width, "] with 1 <= K <= 65536");
      if (centroid_bits != 16)
        QNOISE_CHECK(std::isfinite(centroid_scale) && centroid_scale > 0 && centroid_zero_point >= 0 &&
                         centroid_zero_point < (int64_t{1} << centroid_bits),
                     "pq weight of shape ", shape_to_string(shape), ": centroid scale ", centroid_scale,
                     " must be finite and positive and zero point ", centroid_zero_point, " within ",
                     centroid_bits, " bits");
      const int64_t k = centroids.size(0);
      QNOISE_CHECK(codes.defined() && codes.numel() == layout.n_blocks() &&
                       (codes.scalar_type() == at::kByte || codes.scalar_type() == at::kShort),
                   "pq weight of shape ", shape_to_string(shape), ": codes must be uint8 or uint16 with ",
                   layout.n_blocks(), " elements");
      // uint16 codes are stored in int16 (no uint16 dtype): read them as unsigned.
      const int64_t largest = codes.numel() == 0                  ? 0
                              : codes.scalar_type() == at::kByte ? codes.max().item<int64_t>()
                                                                 : (codes.to(at::kInt) & 0xFFFF).max().item<int64_t>();
      QNOISE_CHECK(largest < k, "pq weight of shape ", shape_to_string(shape), ": code ", largest,
                   " is not below K = ", k);
      return;
    }
  }
}

at::Tensor CompressedWeight::decode() const {
  validate();
  switch (scheme) {
    case WeightScheme::Float32:
    case WeightScheme::Float16:
      return values.to(at::kFloat).reshape(shape);
    case WeightScheme::Int8:
    case WeightScheme::Int4: {
      const int64_t n = numel();
      const at::Tensor unpacked = scheme == WeightScheme::Int8 ? codes : unpack_int4(codes, n);
      const at::Tensor rows = unpacked.reshape({shape[0], -1}).to(at::kFloat);
      const at::Tensor w = (rows - zero_point.to(at::kFloat).unsqueeze(1)) * scale.unsqueeze(1);
      return w.reshape(shape);
    }
    case WeightScheme::PQ: {
      const at::Tensor index = codes.to(at::kLong).bitwise_and(0xFFFF).reshape({-1});
      return layout().from_blocks(decoded_centroids().index_select(0, index));
    }
  }
  return {};
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
  w.values = weight.detach().to(at::kCPU, scheme == WeightScheme::Float32 ? at::kFloat : at::kHalf).contiguous();
  return w;
}

CompressedWeight compress_scalar(const at::Tensor& weight, int bits, ScalarObserver observer) {
  QNOISE_CHECK(bits == 8 || bits == 4, "scalar weights are stored as int8 or int4, not int", bits);
  const at::Tensor w = weight.detach().to(at::kCPU, at::kFloat).contiguous();
  ScalarQuantizer quantizer(ScalarQuantizerOptions().set_bits(bits).set_per_channel(true).set_observer(observer));
  const ScalarQParams qparams = quantizer.observe(w);
  const at::Tensor codes = quantizer.compute_codes(w, qparams).reshape({-1});
  CompressedWeight out;
  out.scheme = bits == 8 ? WeightScheme::Int8 : WeightScheme::Int4;
  out.shape = w.sizes().vec();
  out.codes = bits == 8 ? codes.contiguous() : pack_int4(codes);
  out.scale = qparams.scale.to(at::kFloat).contiguous();
  out.zero_point = qparams.zero_point.to(at::kByte).contiguous();
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
