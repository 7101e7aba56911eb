// int8 / int4 Linear layers: repacking, work split over output rows, and the switch to the
// panel GEMM (panel_gemm.h; decoded tiles and the BLAS GEMM on the reference path) for large batches.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>  // at::get_num_threads

#include <algorithm>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/packed_linear.h"
#include "runtime/int4_fixed_point.h"
#include "runtime/linear_shape.h"
#include "runtime/linear_tuning.h"
#include "runtime/panel_gemm.h"
#include "runtime/scalar_linear_kernels.h"
#include "runtime/tiled_gemm.h"
#include "runtime/worker_pool.h"

namespace qnoise {

namespace {

// Rows per chunk of a small batch: a chunk's codes stay in L2 while every batch row passes over it.
constexpr int64_t kChunkBytes = 256 * 1024;

}  // namespace

PackedScalarLinear::PackedScalarLinear(const CompressedWeight& weight, int bits)
    : PackedLinearBase(runtime::linear_out_in(weight, bits == 8 ? "PackedInt8Linear" : "PackedInt4Linear").first,
                       runtime::linear_out_in(weight, bits == 8 ? "PackedInt8Linear" : "PackedInt4Linear").second),
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

void PackedScalarLinear::forward(const float* x, int64_t batch, float* y, const float* bias) const {
  QNOISE_CHECK(batch >= 0, "PackedInt", bits_, "Linear: negative batch ", batch);
  if (batch == 0) return;
  const auto w = scalar_view(codes_, bits_, in_, row_bytes_, scale_, zero_point_);
  const KernelPath path = kernel_path();
  const bool avx2 = path != KernelPath::Reference;
  const auto& tuning = runtime::linear_tuning();
  // With int8 activations every batch row takes the integer product (the same function at any
  // batch size), however large the batch.
  const bool integer_products = int8_activations() && in_ <= kernels::kMaxInt8ActivationInputs;
  if (!integer_products && batch >= tuning.scalar_gemm_min_batch) {
    if (avx2 && tuning.panel_gemm)
      return runtime::panel_gemm(kernels::scalar_panel_source_avx2(w), x, batch, in_, out_, bias, y);
    const auto decode_rows = avx2 ? kernels::scalar_decode_rows_avx2 : kernels::scalar_decode_rows_reference;
    runtime::tiled_gemm(x, batch, in_, out_, [&](int64_t r0, int64_t r1, float* dst) { decode_rows(w, r0, r1, dst); },
                        y);
    if (bias)
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t o = 0; o < out_; ++o) y[b * out_ + o] += bias[o];
    return;
  }
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), out_ * in_ * batch / tuning.min_work_per_thread));
  const int64_t chunk_rows = std::max<int64_t>(4, kChunkBytes / row_bytes_ / 4 * 4);
  // row_product(b, r0, r1, y_b) computes outputs [r0, r1) of batch row b; threads split the rows.
  auto run_rows = [&](const auto& row_product) {
    runtime::run_parts(parts, [&](int64_t p) {
      const int64_t r0 = p * out_ / parts, r1 = (p + 1) * out_ / parts;
      for (int64_t c0 = r0; c0 < r1; c0 += chunk_rows) {
        const int64_t c1 = std::min(r1, c0 + chunk_rows);
        for (int64_t b = 0; b < batch; ++b) {
          float* yb = y + b * out_;
          row_product(b, c0, c1, yb);
          if (bias)
            for (int64_t o = c0; o < c1; ++o) yb[o] += bias[o];
        }
      }
    });
  };
  if (integer_products) {
    // This thread's buffers, kept between calls (a token's layers would otherwise allocate them
    // each time). The worker threads see them through the pointers: a thread_local named in the
    // lambda would be the worker's own.
    thread_local std::vector<int8_t> xq_buffer;
    thread_local std::vector<float> scale_buffer;
    thread_local std::vector<int32_t> sum_buffer;
    xq_buffer.resize(static_cast<size_t>(batch * in_));
    scale_buffer.resize(static_cast<size_t>(batch));
    sum_buffer.resize(static_cast<size_t>(batch));
    int8_t* xq = xq_buffer.data();
    float* x_scale = scale_buffer.data();
    int32_t* xq_sum = sum_buffer.data();
    const auto quantize = avx2 ? kernels::quantize_activations_avx2 : kernels::quantize_activations;
    for (int64_t b = 0; b < batch; ++b) xq_sum[b] = quantize(x + b * in_, in_, xq + b * in_, &x_scale[b]);
    const auto matvec = path == KernelPath::Avx512 ? kernels::int8_activation_matvec_avx512_vnni
                        : avx2                     ? kernels::int8_activation_matvec_avx2
                                                   : kernels::int8_activation_matvec_reference;
    run_rows([&](int64_t b, int64_t r0, int64_t r1, float* yb) {
      matvec(w, xq + b * in_, xq_sum[b], x_scale[b], r0, r1, yb);
    });
    return;
  }
  const auto matvec = avx2 ? kernels::scalar_matvec_avx2 : kernels::scalar_matvec_reference;
  // int4 with SIMD: integer products on fixed-point activations (int4_fixed_point.h); a batch row
  // with a NaN or infinite activation takes the float kernel, which propagates it.
  struct FixedRow {
    float step = 0.0f;
    int64_t level_sum = 0;
    bool finite = false;
  };
  thread_local std::vector<int32_t> level_buffer;
  thread_local std::vector<int8_t> digit_buffer;
  thread_local std::vector<FixedRow> fixed_buffer;
  const bool fixed_point = avx2 && bits_ == 4 && in_ <= kernels::kMaxFixedPointInputs;
  const int64_t digit_bytes = fixed_point ? kernels::fixed_point_digit_bytes(in_) : 0;
  level_buffer.resize(static_cast<size_t>(fixed_point ? batch * in_ : 0));
  digit_buffer.resize(static_cast<size_t>(batch * digit_bytes));
  fixed_buffer.assign(static_cast<size_t>(batch), FixedRow{});
  int32_t* levels = level_buffer.data();
  int8_t* digits = digit_buffer.data();
  FixedRow* fixed = fixed_buffer.data();
  for (int64_t b = 0; fixed_point && b < batch; ++b)
    fixed[b].finite = kernels::fixed_point_activations_avx2(x + b * in_, in_, levels + b * in_,
                                                            digits + b * digit_bytes, &fixed[b].step,
                                                            &fixed[b].level_sum);
  // The float kernel's x_sum, for the rows that take it.
  thread_local std::vector<float> sum_buffer;
  sum_buffer.assign(static_cast<size_t>(batch), 0.0f);
  float* x_sum = sum_buffer.data();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; !fixed[b].finite && i < in_; ++i) x_sum[b] += x[b * in_ + i];
  const auto fixed_matvec = path == KernelPath::Avx512 ? kernels::int4_fixed_point_matvec_avx512_vnni
                                                       : kernels::int4_fixed_point_matvec_avx2;
  run_rows([&](int64_t b, int64_t r0, int64_t r1, float* yb) {
    if (fixed[b].finite)
      fixed_matvec(w, digits + b * digit_bytes, levels + b * in_, fixed[b].level_sum, fixed[b].step, r0, r1, yb);
    else
      matvec(w, x + b * in_, x_sum[b], r0, r1, yb);
  });
}

}  // namespace qnoise
