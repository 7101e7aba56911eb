// Row-selective decoding of compressed embedding tables, with torch ops on the selected rows only.
#include "qnoise/embedding_rows.h"

#include <ATen/ATen.h>

#include <iterator>

#include "qnoise/error.h"
#include "qnoise/weight_scheme_traits.h"

namespace qnoise {

namespace {

void check_part(const at::Tensor& t, at::ScalarType dtype, int64_t numel, const char* what, const CompressedWeight& w) {
  QNOISE_CHECK(t.defined() && t.scalar_type() == dtype && t.numel() == numel, "decode_rows: ", to_string(w.scheme),
               " table ", shape_to_string(w.shape), " needs ", what, " of ", numel, " ", c10::toString(dtype),
               " values");
}

// Each scheme's rows `index` (int64 [n], within [0, rows)) of a table [rows, dim], as float32 [n, dim].
using RowDecoder = at::Tensor (*)(const CompressedWeight& weight, const at::Tensor& index);

at::Tensor float_rows(const CompressedWeight& weight, const at::Tensor& index) {
  const int64_t rows = weight.shape[0], dim = weight.shape[1];
  check_part(weight.values, traits(weight.scheme).values_dtype, rows * dim, "values", weight);
  return weight.values.reshape({rows, dim}).index_select(0, index).to(at::kFloat);
}

at::Tensor scalar_rows(const CompressedWeight& weight, const at::Tensor& index) {
  const int64_t rows = weight.shape[0], dim = weight.shape[1], n = index.numel();
  const bool int8 = traits(weight.scheme).value_bits == 8;
  check_part(weight.codes, at::kByte, int8 ? rows * dim : (rows * dim + 1) / 2, "codes", weight);
  check_part(weight.scale, at::kFloat, rows, "a scale per row", weight);
  check_part(weight.zero_point, at::kByte, rows, "a zero point per row", weight);
  at::Tensor codes;
  if (int8) {
    codes = weight.codes.reshape({rows, dim}).index_select(0, index);
  } else {  // element e of the row-major table sits in byte e / 2, low nibble when e is even
    const at::Tensor element = index.unsqueeze(1) * dim + at::arange(dim, index.options()).unsqueeze(0);
    const at::Tensor bytes = weight.codes.index_select(0, element.div(2, "floor").reshape({-1})).reshape({n, dim});
    codes = bytes.bitwise_right_shift(element.remainder(2) * 4).bitwise_and(15);
  }
  const at::Tensor zero_point = weight.zero_point.index_select(0, index).to(at::kFloat).unsqueeze(1);
  const at::Tensor scale = weight.scale.index_select(0, index).unsqueeze(1);
  return (codes.to(at::kFloat) - zero_point) * scale;
}

// Only the selected rows' codes are checked against K.
at::Tensor pq_rows(const CompressedWeight& weight, const at::Tensor& index) {
  const int64_t rows = weight.shape[0], dim = weight.shape[1], n = index.numel();
  const int64_t d = weight.block_size;
  QNOISE_CHECK(d >= 1 && dim % d == 0, "decode_rows: block size ", d, " does not divide the table's dim ", dim);
  const int64_t k = weight.n_centroids();
  QNOISE_CHECK(k >= 1 && weight.centroids.dim() == 2, "decode_rows: pq table ", shape_to_string(weight.shape),
               " needs a codebook [K, ...]");
  const at::Tensor centroids = weight.decoded_centroids();  // float16, 8- or 4-bit codebooks alike
  QNOISE_CHECK(centroids.size(1) == d, "decode_rows: pq table ", shape_to_string(weight.shape), " needs centroids [K, ",
               d, "]");
  QNOISE_CHECK(weight.codes.defined() && weight.codes.numel() == rows * (dim / d) &&
                   (weight.codes.scalar_type() == at::kByte || weight.codes.scalar_type() == at::kShort),
               "decode_rows: pq table ", shape_to_string(weight.shape), " needs ", rows * (dim / d),
               " uint8 or uint16 codes");
  const at::Tensor codes =
      weight.codes.reshape({rows, dim / d}).index_select(0, index).to(at::kLong).bitwise_and(0xFFFF);
  if (n > 0) {
    const int64_t largest = codes.max().item<int64_t>();
    QNOISE_CHECK(largest < k, "decode_rows: pq code ", largest, " is not below K = ", k);
  }
  return centroids.index_select(0, codes.reshape({-1})).reshape({n, dim});
}

// The runtime's row decoder of each scheme, beside the core's scheme traits (weight_scheme_traits.h),
// in the same order.
struct SchemeRows {
  WeightScheme scheme;
  RowDecoder decode_rows;
};

constexpr SchemeRows kSchemeRows[] = {
    {WeightScheme::Float32, float_rows}, {WeightScheme::Float16, float_rows}, {WeightScheme::Int8, scalar_rows},
    {WeightScheme::Int4, scalar_rows},   {WeightScheme::PQ, pq_rows},
};

constexpr bool in_enum_order() {
  for (size_t i = 0; i < std::size(kSchemeRows); ++i)
    if (kSchemeRows[i].scheme != kWeightSchemes[i]) return false;
  return true;
}
static_assert(std::size(kSchemeRows) == kWeightSchemeCount && in_enum_order(), "one entry per scheme, in order");

}  // namespace

at::Tensor decode_rows(const CompressedWeight& weight, const at::Tensor& indices) {
  QNOISE_CHECK(weight.shape.size() == 2 && weight.shape[0] > 0 && weight.shape[1] > 0,
               "decode_rows takes a 2-D table [rows, dim], got ", shape_to_string(weight.shape));
  const int64_t rows = weight.shape[0];
  QNOISE_CHECK(indices.defined() && at::isIntegralType(indices.scalar_type(), /*includeBool=*/false),
               "decode_rows: indices must be an integer tensor");
  const at::Tensor index = indices.reshape({-1}).to(at::kLong).cpu();
  if (index.numel() > 0) {
    const int64_t lowest = index.min().item<int64_t>(), highest = index.max().item<int64_t>();
    QNOISE_CHECK(lowest >= 0 && highest < rows, "decode_rows: index ", lowest < 0 ? lowest : highest,
                 " is outside the table's ", rows, " rows");
  }
  return kSchemeRows[scheme_index(weight.scheme)].decode_rows(weight, index);
}

}  // namespace qnoise
