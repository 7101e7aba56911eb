// int8 / int4 Linear layers: repacking, then per call a choice between three strategies: integer
// products on int8 activations, the GEMM for large float batches (panel_gemm.h; decoded tiles and
// the BLAS GEMM on the reference path), or matrix-vector kernels over row chunks split between
// threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>  // at::get_num_threads

#include <algorithm>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/packed_linear.h"
#include "kernels/kernel_table.h"
#include "runtime/linear_shape.h"
#include "runtime/panel_gemm.h"
#include "runtime/tiled_gemm.h"
#include "runtime/worker_pool.h"

namespace qnoise {

namespace {

// Rows per chunk of a small batch: a chunk's codes stay in L2 while every batch row passes over it.
constexpr int64_t kChunkBytes = 256 * 1024;

}  // namespace

PackedScalarLinear::PackedScalarLinear(const CompressedWeight& weight, int bits, const RuntimeOptions& options)
    : PackedLinearBase(runtime::linear_out_in(weight, bits == 8 ? "PackedInt8Linear" : "PackedInt4Linear").first,
                       runtime::linear_out_in(weight, bits == 8 ? "PackedInt8Linear" : "PackedInt4Linear").second,
                       options),
      bits_(bits) {
  const WeightScheme expected = bits == 8 ? WeightScheme::Int8 : WeightScheme::Int4;
  QNOISE_CHECK(weight.scheme == expected, "PackedInt", bits, "Linear takes an ", to_string(expected), " weight, got ",
               to_string(weight.scheme));
  weight.validate();  // per-row scale and zero point, code count
  const at::Tensor codes = bits == 8 ? weight.codes.contiguous() : unpack_int4(weight.codes, out_ * in_);
  const uint8_t* from = codes.data_ptr<uint8_t>();
  row_bytes_ = bits == 8 ? in_ : kernels::int4_row_bytes(in_);
  codes_.assign(static_cast<size_t>(out_ * row_bytes_), 0);
  for (int64_t o = 0; o < out_; ++o) {
    uint8_t* row = codes_.data() + o * row_bytes_;
    const uint8_t* src = from + o * in_;
    if (bits == 8) {
      std::copy_n(src, in_, row);
      continue;
    }
    for (int64_t i = 0; i < in_; ++i) kernels::set_int4_code(row, i, src[i]);
  }
  const at::Tensor scale = weight.scale.contiguous(), zero_point = weight.zero_point.to(at::kFloat).contiguous();
  scale_.assign(scale.data_ptr<float>(), scale.data_ptr<float>() + out_);
  zero_point_.assign(zero_point.data_ptr<float>(), zero_point.data_ptr<float>() + out_);
}

int64_t PackedScalarLinear::bytes() const {
  return static_cast<int64_t>(codes_.size() + 4 * (scale_.size() + zero_point_.size()));
}

namespace {

kernels::ScalarLinearWeight scalar_view(const std::vector<uint8_t>& codes, int bits, int64_t in, int64_t row_bytes,
                                        const std::vector<float>& scale, const std::vector<float>& zero_point) {
  kernels::ScalarLinearWeight w;
  w.codes = codes.data();
  w.bits = bits;
  w.in = in;
  w.row_bytes = row_bytes;
  w.scale = scale.data();
  w.zero_point = zero_point.data();
  return w;
}

}  // namespace

at::Tensor PackedScalarLinear::decode() const {
  at::Tensor out = at::empty({out_, in_}, at::kFloat);
  kernels::scalar_decode_rows_reference(scalar_view(codes_, bits_, in_, row_bytes_, scale_, zero_point_), 0, out_,
                                        out.data_ptr<float>());
  return out;
}

void PackedScalarLinear::decode_row(int64_t row, float* out) const {
  kernels::scalar_decode_rows_reference(scalar_view(codes_, bits_, in_, row_bytes_, scale_, zero_point_), row, row + 1,
                                        out);
}

namespace {

// One call's weight, kernels and tuning, shared by the three ways of computing it.
struct ScalarCall {
  const kernels::ScalarLinearWeight& w;
  const kernels::KernelTable& kernels;
  const LinearTuning& tuning;
  int64_t out, in, bits;
  const float* x;
  int64_t batch;
  const float* bias;
  float* y;
};

// Large float batches: the panel GEMM, or decoded tiles and the BLAS GEMM.
void gemm_forward(const ScalarCall& c) {
  if (c.kernels.panel_gemm != nullptr && c.tuning.panel_gemm)
    return runtime::panel_gemm(c.kernels.panel_gemm, c.kernels.scalar_panel_source(c.w), c.x, c.batch, c.in, c.out,
                               c.bias, c.y, c.tuning);
  const auto decode_rows = c.kernels.scalar_decode_rows;
  runtime::tiled_gemm(c.x, c.batch, c.in, c.out,
                      [&](int64_t r0, int64_t r1, float* dst) { decode_rows(c.w, r0, r1, dst); }, c.y,
                      c.tuning.gemm_tile_floats);
  if (c.bias)
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t o = 0; o < c.out; ++o) c.y[b * c.out + o] += c.bias[o];
}

// row_product(b, r0, r1, y_b) computes outputs [r0, r1) of batch row b; threads split the rows, in
// chunks whose codes stay in L2 while every batch row passes over them.
template <typename RowProduct>
void run_rows(const ScalarCall& c, int64_t row_bytes, const RowProduct& row_product) {
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), c.out * c.in * c.batch / c.tuning.min_work_per_thread));
  const int64_t chunk_rows = std::max<int64_t>(4, kChunkBytes / row_bytes / 4 * 4);
  runtime::run_parts(parts, [&](int64_t p) {
    const int64_t r0 = p * c.out / parts, r1 = (p + 1) * c.out / parts;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk_rows) {
      const int64_t c1 = std::min(r1, c0 + chunk_rows);
      for (int64_t b = 0; b < c.batch; ++b) {
        float* yb = c.y + b * c.out;
        row_product(b, c0, c1, yb);
        if (c.bias)
          for (int64_t o = c0; o < c1; ++o) yb[o] += c.bias[o];
      }
    }
  }, runtime::idle_workers(c.tuning));
}

// Int8 activations: each batch row quantized to 7-bit integers, integer products with the codes.
void int8_activation_forward(const ScalarCall& c, int64_t row_bytes) {
  // This thread's buffers, kept between calls (a token's layers would otherwise allocate them
  // each time). The worker threads see them through the pointers: a thread_local named in the
  // lambda would be the worker's own.
  thread_local std::vector<int8_t> xq_buffer;
  thread_local std::vector<float> scale_buffer;
  thread_local std::vector<int32_t> sum_buffer;
  xq_buffer.resize(static_cast<size_t>(c.batch * c.in));
  scale_buffer.resize(static_cast<size_t>(c.batch));
  sum_buffer.resize(static_cast<size_t>(c.batch));
  int8_t* xq = xq_buffer.data();
  float* x_scale = scale_buffer.data();
  int32_t* xq_sum = sum_buffer.data();
  for (int64_t b = 0; b < c.batch; ++b)
    xq_sum[b] = c.kernels.quantize_activations(c.x + b * c.in, c.in, xq + b * c.in, &x_scale[b]);
  const auto matvec = c.kernels.int8_activation_matvec;
  run_rows(c, row_bytes, [&](int64_t b, int64_t r0, int64_t r1, float* yb) {
    matvec(c.w, xq + b * c.in, xq_sum[b], x_scale[b], r0, r1, yb);
  });
}

// Float activations, small batches: the float kernel, or for int4 on SIMD paths integer products
// on fixed-point activations (int4_fixed_point.h); a batch row with a NaN or infinite activation
// takes the float kernel, which propagates it.
void float_activation_forward(const ScalarCall& c, int64_t row_bytes) {
  struct FixedRow {
    float step = 0.0f;
    int64_t level_sum = 0;
    bool finite = false;
  };
  thread_local std::vector<int32_t> level_buffer;
  thread_local std::vector<int8_t> digit_buffer;
  thread_local std::vector<FixedRow> fixed_buffer;
  const bool fixed_point =
      c.kernels.fixed_point_activations != nullptr && c.bits == 4 && c.in <= kernels::kMaxFixedPointInputs;
  const int64_t digit_bytes = fixed_point ? kernels::fixed_point_digit_bytes(c.in) : 0;
  level_buffer.resize(static_cast<size_t>(fixed_point ? c.batch * c.in : 0));
  digit_buffer.resize(static_cast<size_t>(c.batch * digit_bytes));
  fixed_buffer.assign(static_cast<size_t>(c.batch), FixedRow{});
  int32_t* levels = level_buffer.data();
  int8_t* digits = digit_buffer.data();
  FixedRow* fixed = fixed_buffer.data();
  for (int64_t b = 0; fixed_point && b < c.batch; ++b)
    fixed[b].finite = c.kernels.fixed_point_activations(c.x + b * c.in, c.in, levels + b * c.in,
                                                        digits + b * digit_bytes, &fixed[b].step,
                                                        &fixed[b].level_sum);
  // The float kernel's x_sum, for the rows that take it.
  thread_local std::vector<float> sum_buffer;
  sum_buffer.assign(static_cast<size_t>(c.batch), 0.0f);
  float* x_sum = sum_buffer.data();
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; !fixed[b].finite && i < c.in; ++i) x_sum[b] += c.x[b * c.in + i];
  const auto matvec = c.kernels.scalar_matvec;
  const auto fixed_matvec = c.kernels.int4_fixed_point_matvec;
  run_rows(c, row_bytes, [&](int64_t b, int64_t r0, int64_t r1, float* yb) {
    if (fixed[b].finite)
      fixed_matvec(c.w, digits + b * digit_bytes, levels + b * c.in, fixed[b].level_sum, fixed[b].step, r0, r1, yb);
    else
      matvec(c.w, c.x + b * c.in, x_sum[b], r0, r1, yb);
  });
}

}  // namespace

void PackedScalarLinear::forward(const float* x, int64_t batch, float* y, const float* bias) const {
  QNOISE_CHECK(batch >= 0, "PackedInt", bits_, "Linear: negative batch ", batch);
  if (batch == 0) return;
  const auto w = scalar_view(codes_, bits_, in_, row_bytes_, scale_, zero_point_);
  const ScalarCall call{w, *kernels_, options_.tuning, out_, in_, bits_, x, batch, bias, y};
  // With int8 activations every batch row takes the integer product (the same function at any
  // batch size), however large the batch.
  const bool integer_products = options_.int8_activations && in_ <= kernels::kMaxInt8ActivationInputs;
  if (integer_products) return int8_activation_forward(call, row_bytes_);
  if (batch >= options_.tuning.scalar_gemm_min_batch) return gemm_forward(call);
  float_activation_forward(call, row_bytes_);
}

}  // namespace qnoise
