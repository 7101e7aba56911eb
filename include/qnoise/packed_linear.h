#pragma once
// Linear layers y = W x (+ bias) run straight from compressed weights, never materialising the
// float weight: each type repacks a CompressedWeight once into the layout its kernels read fastest.
//
//  * PackedPqLinear: lookup tables. For input block j and centroid k, T_j[k] = c_k . x_j is built
//    once per call (K * in multiply-adds, like a K-row matvec), then y_o = sum_j T_j[I(o, j)].
//    Codes are stored 8 output rows interleaved and in groups of blocks whose tables stay in L1
//    (batch 1) or L2 (batches, where T_j[k] holds one value per batch column).
//  * PackedInt8Linear / PackedInt4Linear: per-row affine codes dequantized in registers,
//    y_o = scale_o * (sum_i q_oi x_i - zero_point_o * sum_i x_i), fp32 activations (optionally
//    int8 activations, see runtime_options.h).
//
// Large batches of int8/int4 decode tiles of W into a thread-local float buffer and call the
// BLAS GEMM (the switch points are RuntimeOptions::tuning).
// Work is spread over at::get_num_threads() threads; results may differ in the last bits between
// thread counts (fp32 summation order) but not between runs.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/runtime_options.h"

namespace qnoise {

namespace kernels {
struct PqLutWeight;
struct KernelTable;
}

// Shared by the three packed types: shapes and the at::Tensor convenience forward.
class PackedLinearBase {
 public:
  virtual ~PackedLinearBase() = default;
  int64_t out_features() const { return out_; }
  const RuntimeOptions& options() const { return options_; }
  int64_t in_features() const { return in_; }
  // x: float32 [batch, in] or [in] (any strides); bias: float32 [out] or undefined.
  // Returns [batch, out] (or [out]).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias = {}) const;
  // x row-major [batch, in], y row-major [batch, out]; bias [out] or nullptr.
  virtual void forward(const float* x, int64_t batch, float* y, const float* bias = nullptr) const = 0;
  // Resident bytes of the packed weight (codes, tables, scales), without per-call workspace.
  virtual int64_t bytes() const = 0;
  // The float weight [out, in] these kernels multiply by (for tests).
  virtual at::Tensor decode() const = 0;
  // Rows `indices` (an integer tensor of any shape, values in [0, out)) of that weight, [n, in]:
  // lookups in an embedding table kept only in its packed form. Throws qnoise::Error on bad indices.
  at::Tensor decode_rows(const at::Tensor& indices) const;
  // x W for x float32 [batch, out] or [out]: the product with the transposed weight, [batch, in]
  // or [in] (a tied output projection), without decoding the whole weight.
  at::Tensor transposed_forward(const at::Tensor& x) const;

 protected:
  // Throws qnoise::Error when the CPU lacks the instructions of options.kernel_path.
  PackedLinearBase(int64_t out, int64_t in, const RuntimeOptions& options);
  // Row `row` of the float weight into out[0, in).
  virtual void decode_row(int64_t row, float* out) const = 0;
  // y[batch, in] += x[batch, out] W. This default decodes one row of W at a time.
  virtual void transposed_product(const float* x, int64_t batch, float* y) const;
  // x checked to be float32 [batch, width] or [width] (named `what` in the error), as contiguous
  // [batch, width].
  at::Tensor input_rows(const at::Tensor& x, int64_t width, const char* what) const;
  using RawForward = std::function<void(const float* x, int64_t batch, float* y, const float* bias)>;
  // Checks x and bias, then runs `run` on contiguous float buffers.
  at::Tensor forward_tensor(const at::Tensor& x, const at::Tensor& bias, const RawForward& run) const;
  int64_t out_;
  int64_t in_;
  RuntimeOptions options_;
  const kernels::KernelTable* kernels_;  // the table of options_.kernel_path
};

class PackedPqLinear : public PackedLinearBase {
 public:
  // weight: scheme PQ, shape [out, in] or [out, in, 1, 1], K <= 256 with uint8 codes, any
  // block size dividing in. Throws qnoise::Error otherwise (codes >= K included).
  explicit PackedPqLinear(const CompressedWeight& weight, const RuntimeOptions& options = {});

  using PackedLinearBase::forward;
  void forward(const float* x, int64_t batch, float* y, const float* bias = nullptr) const override {
    forward(x, batch, y, bias, nullptr);
  }
  // row_scale [out] multiplies each output row before the bias (nullptr = none).
  void forward(const float* x, int64_t batch, float* y, const float* bias, const float* row_scale) const;
  // row_scale: float32 [out] or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& row_scale) const;
  int64_t bytes() const override;
  at::Tensor decode() const override;

  int64_t block_size() const { return block_size_; }
  int64_t n_centroids() const { return n_centroids_; }

 protected:
  void decode_row(int64_t row, float* out) const override;
  // Per block: the inputs summed by code (out adds), then K * d multiply-adds with the codebook.
  void transposed_product(const float* x, int64_t batch, float* y) const override;

 public:
  // One call's buffers (forward's arguments), for the strategies below.
  struct PqCall {
    const float* x;
    int64_t batch;
    float* y;
    const float* bias;
    const float* row_scale;
  };

 private:
  kernels::PqLutWeight lut_view() const;  // the kernels' view of the members below
  kernels::PqLutWeight int8_table_view() const;  // with the AVX2 kernel's level pairs where it needs them
  // The three strategies forward() chooses between.
  void gemm_forward(const PqCall& call) const;
  void int8_table_rows_forward(const PqCall& call) const;
  void lookup_forward(const PqCall& call, bool int8_tables) const;

  int64_t block_size_;
  int64_t n_blocks_;      // per row
  int64_t n_centroids_;   // K
  int64_t group_blocks_;  // blocks per group (see pq_lut_kernels.h)
  int64_t out_padded_;
  std::vector<uint8_t> codes_;        // in groups of blocks and chunks of 64 rows, see pq_lut_kernels.h
  std::vector<float> centroids_t_;    // the codebook transposed, [d][K rounded up to 8], zero padded
  std::vector<uint8_t> centroids_q_;  // int8-table form, see pq_lut_kernels.h
  float centroid_scale_ = 0.0f;
};

// int8 (bits 8) and int4 (bits 4) per-output-row affine weights.
class PackedScalarLinear : public PackedLinearBase {
 public:
  using PackedLinearBase::forward;
  void forward(const float* x, int64_t batch, float* y, const float* bias = nullptr) const override;
  int64_t bytes() const override;
  at::Tensor decode() const override;
  int bits() const { return bits_; }

 protected:
  // weight: scheme Int8 or Int4 with per-row scale and zero point, shape [out, in] or
  // [out, in, 1, 1]. Throws qnoise::Error otherwise.
  PackedScalarLinear(const CompressedWeight& weight, int bits, const RuntimeOptions& options);
  void decode_row(int64_t row, float* out) const override;

 private:
  int bits_;
  int64_t row_bytes_;                 // int8: in; int4: 16 bytes per 32 inputs (see scalar_linear_kernels.h)
  std::vector<uint8_t> codes_;
  std::vector<float> scale_;
  std::vector<float> zero_point_;
};

class PackedInt8Linear : public PackedScalarLinear {
 public:
  explicit PackedInt8Linear(const CompressedWeight& weight, const RuntimeOptions& options = {})
      : PackedScalarLinear(weight, 8, options) {}
};

class PackedInt4Linear : public PackedScalarLinear {
 public:
  explicit PackedInt4Linear(const CompressedWeight& weight, const RuntimeOptions& options = {})
      : PackedScalarLinear(weight, 4, options) {}
};

}  // namespace qnoise
