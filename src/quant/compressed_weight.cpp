#include "qnoise/compressed_weight.h"

#include <ATen/ATen.h>

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

}  // namespace

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
      QNOISE_CHECK(centroids.defined() && centroids.dim() == 2 && centroids.scalar_type() == at::kHalf &&
                       centroids.size(1) == block_size && centroids.size(0) >= 1 && centroids.size(0) <= 65536,
                   "pq weight of shape ", shape_to_string(shape), ": centroids must be float16 [K, ", block_size,
                   "] with 1 <= K <= 65536");
      const int64_t k = centroids.size(0);
      QNOISE_CHECK(codes.defined() && codes.numel() == layout.n_blocks() &&
                       (codes.scalar_type() == at::kByte || codes.scalar_type() == at::kShort),
                   "pq weight of shape ", shape_to_string(shape), ": codes must be uint8 or uint16 with ",
                   layout.n_blocks(), " elements");
      const int64_t largest = codes.numel() == 0 ? 0 : (codes.to(at::kInt) & 0xFFFF).max().item<int64_t>();
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
      return layout().from_blocks(centroids.to(at::kFloat).index_select(0, index));
    }
  }
  return {};
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

CompressedWeight compress_pq(const BlockLayout& layout, const at::Tensor& codebook, const at::Tensor& codes) {
  CompressedWeight out;
  out.scheme = WeightScheme::PQ;
  out.shape = layout.weight_shape();
  out.layer_kind = layout.kind();
  out.block_size = layout.block_size();
  out.centroids = codebook.detach().to(at::kCPU, at::kHalf).contiguous();
  out.codes = codes.detach().to(at::kCPU).reshape({-1}).contiguous();
  out.validate();
  return out;
}

}  // namespace qnoise
