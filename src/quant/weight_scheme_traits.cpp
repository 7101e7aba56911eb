// The scheme traits table (weight_scheme_traits.h) and each scheme's functions in it.
#include "qnoise/weight_scheme_traits.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "qnoise/error.h"
#include "qnoise/json_input.h"

namespace qnoise {

namespace {

// What a part holds, for messages: "Float with 60", or "none".
std::string tensor_summary(const at::Tensor& t) {
  return t.defined() ? std::string(c10::toString(t.scalar_type())) + " with " + std::to_string(t.numel()) : "none";
}

void check_tensor(const at::Tensor& t, at::ScalarType dtype, int64_t numel, const char* what,
                  const CompressedWeight& w) {
  QNOISE_CHECK(t.defined() && t.scalar_type() == dtype && t.numel() == numel, to_string(w.scheme),
               " weight of shape ", shape_to_string(w.shape), ": ", what, " must be ", c10::toString(dtype), " with ",
               numel, " elements, got ", tensor_summary(t));
}

// Safetensors dtypes of the parts (StoredPart::dtype).
const char* f32_dtype(const CompressedWeight&) { return "F32"; }
const char* f16_dtype(const CompressedWeight&) { return "F16"; }
const char* u8_dtype(const CompressedWeight&) { return "U8"; }
// K <= 256: uint8; larger codebooks: uint16 (held in int16).
const char* pq_codes_dtype(const CompressedWeight& w) {
  if (!w.codes.defined()) return "U8|U16";
  return w.codes.scalar_type() == at::kByte ? "U8" : "U16";
}
const char* pq_centroids_dtype(const CompressedWeight& w) { return w.centroid_bits == 16 ? "F16" : "U8"; }

// float32 / float16: the values themselves.

template <WeightScheme Scheme>
CompressedWeight encode_float(const at::Tensor& weight) {
  return compress_float(weight, Scheme);
}

void validate_float(const CompressedWeight& w) {
  check_tensor(w.values, traits(w.scheme).values_dtype, w.numel(), "values", w);
}

at::Tensor decode_float(const CompressedWeight& w) { return w.values.to(at::kFloat).reshape(w.shape); }

// int8 / int4: per-output-channel affine codes, int4 two per byte.

template <int Bits>
CompressedWeight encode_scalar(const at::Tensor& weight) {
  return compress_scalar(weight, Bits);
}

template <int Bits>
void validate_scalar(const CompressedWeight& w) {
  const int64_t n = w.numel();
  check_tensor(w.codes, at::kByte, Bits == 8 ? n : (n + 1) / 2, "codes", w);
  check_tensor(w.scale, at::kFloat, w.shape[0], "scale", w);
  check_tensor(w.zero_point, at::kByte, w.shape[0], "zero_point", w);
  QNOISE_CHECK(w.scale.isfinite().all().item<bool>() && w.scale.gt(0).all().item<bool>(), to_string(w.scheme),
               " weight: scales must be finite and positive");
  QNOISE_CHECK(w.zero_point.le((1 << Bits) - 1).all().item<bool>(), to_string(w.scheme), " weight: zero point beyond ",
               (1 << Bits) - 1);
}

template <int Bits>
at::Tensor decode_scalar(const CompressedWeight& w) {
  const at::Tensor unpacked = Bits == 8 ? w.codes : unpack_int4(w.codes, w.numel());
  const at::Tensor rows = unpacked.reshape({w.shape[0], -1}).to(at::kFloat);
  return ((rows - w.zero_point.to(at::kFloat).unsqueeze(1)) * w.scale.unsqueeze(1)).reshape(w.shape);
}

// The .qnz description of int8 / int4 weights is their scheme and shape alone.
void describe_nothing(const CompressedWeight&, nlohmann::json&) {}
void parse_nothing(const nlohmann::json&, CompressedWeight&) {}

// pq: codes into a codebook of K centroids, in float16 or 8 / 4-bit affine codes.

void validate_pq_centroids(const CompressedWeight& w) {
  check_centroid_bits(w.centroid_bits);
  const int64_t stored_width = w.centroid_bits == 4 ? (w.block_size + 1) / 2 : w.block_size;
  const at::ScalarType stored_dtype = w.centroid_bits == 16 ? at::kHalf : at::kByte;
  const at::Tensor& c = w.centroids;
  QNOISE_CHECK(c.defined() && c.dim() == 2 && c.scalar_type() == stored_dtype && c.size(1) == stored_width &&
                   c.size(0) >= 1 && c.size(0) <= 65536,
               "pq weight of shape ", shape_to_string(w.shape), ": centroids in ", w.centroid_bits, " bits must be ",
               c10::toString(stored_dtype), " [K, ", stored_width, "] with 1 <= K <= 65536");
  if (w.centroid_bits != 16)
    QNOISE_CHECK(std::isfinite(w.centroid_scale) && w.centroid_scale > 0 && w.centroid_zero_point >= 0 &&
                     w.centroid_zero_point < (int64_t{1} << w.centroid_bits),
                 "pq weight of shape ", shape_to_string(w.shape), ": centroid scale ", w.centroid_scale,
                 " must be finite and positive and zero point ", w.centroid_zero_point, " within ", w.centroid_bits,
                 " bits");
}

void validate_pq(const CompressedWeight& w) {
  const BlockLayout layout = w.layout();  // throws when block_size does not divide a row
  validate_pq_centroids(w);
  const int64_t k = w.centroids.size(0);
  const at::Tensor& codes = w.codes;
  QNOISE_CHECK(codes.defined() && codes.numel() == layout.n_blocks() &&
                   (codes.scalar_type() == at::kByte || codes.scalar_type() == at::kShort),
               "pq weight of shape ", shape_to_string(w.shape), ": codes must be uint8 or uint16 with ",
               layout.n_blocks(), " elements");
  // uint16 codes are stored in int16 (no uint16 dtype): read them as unsigned.
  const int64_t largest = codes.numel() == 0                  ? 0
                          : codes.scalar_type() == at::kByte ? codes.max().item<int64_t>()
                                                             : (codes.to(at::kInt) & 0xFFFF).max().item<int64_t>();
  QNOISE_CHECK(largest < k, "pq weight of shape ", shape_to_string(w.shape), ": code ", largest,
               " is not below K = ", k);
}

at::Tensor decode_pq(const CompressedWeight& w) {
  const at::Tensor index = w.codes.to(at::kLong).bitwise_and(0xFFFF).reshape({-1});
  return w.layout().from_blocks(w.decoded_centroids().index_select(0, index));
}

LayerKind parse_layer_kind(const std::string& name) {
  for (auto kind : {LayerKind::Linear, LayerKind::Embedding, LayerKind::Conv2d, LayerKind::Conv1d})
    if (to_string(kind) == name) return kind;
  throw Error("unknown layer kind '" + name + "'");
}

// The layout, and the codebook's affine parameters unless it is float16 (centroid_bits is then left out).
void describe_pq(const CompressedWeight& w, nlohmann::json& d) {
  d["layer_kind"] = to_string(w.layer_kind);
  d["block_size"] = w.block_size;
  if (w.centroid_bits != 16) {
    d["centroid_bits"] = w.centroid_bits;
    d["centroid_scale"] = w.centroid_scale;  // float32, exact through JSON's double
    d["centroid_zero_point"] = w.centroid_zero_point;
  }
}

// d[key] as an integer: nlohmann casts a float to an integer type, which is undefined beyond the
// type's range (1e300).
int64_t integer_at(const nlohmann::json& d, const char* key) {
  QNOISE_CHECK(d.at(key).is_number_integer(), "'", key, "' must be an integer, got ", quote_json(d.at(key)));
  return d.at(key).get<int64_t>();
}

void parse_pq(const nlohmann::json& d, CompressedWeight& w) {
  w.layer_kind = parse_layer_kind(d.at("layer_kind").get<std::string>());
  w.block_size = integer_at(d, "block_size");
  w.centroid_bits = d.contains("centroid_bits") ? static_cast<int>(integer_at(d, "centroid_bits")) : 16;
  if (w.centroid_bits != 16) {
    // A float: double to float is undefined beyond float's range too.
    const double scale = d.at("centroid_scale").get<double>();
    QNOISE_CHECK(std::isfinite(scale) && std::abs(scale) <= std::numeric_limits<float>::max(),
                 "'centroid_scale' ", scale, " is not a finite float");
    w.centroid_scale = static_cast<float>(scale);
    w.centroid_zero_point = integer_at(d, "centroid_zero_point");
  }
}

constexpr WeightSchemeTraits kTraits[] = {
    {WeightScheme::Float32, "float32", 32, at::kFloat, 1, {{"", &CompressedWeight::values, f32_dtype}},
     encode_float<WeightScheme::Float32>, validate_float, decode_float, nullptr, nullptr},
    {WeightScheme::Float16, "float16", 16, at::kHalf, 1, {{"", &CompressedWeight::values, f16_dtype}},
     encode_float<WeightScheme::Float16>, validate_float, decode_float, nullptr, nullptr},
    {WeightScheme::Int8, "int8", 8, at::ScalarType::Undefined, 3,
     {{".codes", &CompressedWeight::codes, u8_dtype},
      {".scale", &CompressedWeight::scale, f32_dtype},
      {".zero_point", &CompressedWeight::zero_point, u8_dtype}},
     encode_scalar<8>, validate_scalar<8>, decode_scalar<8>, describe_nothing, parse_nothing},
    {WeightScheme::Int4, "int4", 4, at::ScalarType::Undefined, 3,
     {{".codes", &CompressedWeight::codes, u8_dtype},
      {".scale", &CompressedWeight::scale, f32_dtype},
      {".zero_point", &CompressedWeight::zero_point, u8_dtype}},
     encode_scalar<4>, validate_scalar<4>, decode_scalar<4>, describe_nothing, parse_nothing},
    {WeightScheme::PQ, "pq", 0, at::ScalarType::Undefined, 2,
     {{".codes", &CompressedWeight::codes, pq_codes_dtype},
      {".centroids", &CompressedWeight::centroids, pq_centroids_dtype}},
     nullptr, validate_pq, decode_pq, describe_pq, parse_pq},
};

constexpr bool in_enum_order() {
  for (size_t i = 0; i < std::size(kTraits); ++i)
    if (kTraits[i].scheme != kWeightSchemes[i]) return false;
  return true;
}
static_assert(std::size(kTraits) == kWeightSchemeCount && in_enum_order(), "one traits entry per scheme, in order");

}  // namespace

size_t scheme_index(WeightScheme scheme) {
  const auto index = static_cast<size_t>(scheme);
  QNOISE_CHECK(index < kWeightSchemeCount, "unknown weight scheme ", index);
  return index;
}

const WeightSchemeTraits& traits(WeightScheme scheme) { return kTraits[scheme_index(scheme)]; }

std::string to_string(WeightScheme scheme) {
  return static_cast<size_t>(scheme) < kWeightSchemeCount ? traits(scheme).name : "?";
}

WeightScheme parse_weight_scheme(const std::string& name) {
  for (const WeightSchemeTraits& t : kTraits)
    if (t.name == name) return t.scheme;
  throw Error("unknown weight scheme '" + name + "' (float32, float16, int8, int4 or pq)");
}

}  // namespace qnoise
