// PQ Linear layer on lookup tables: repacking, work split and the final per-row scale and bias.
//
// Threads split the block groups (the input dimension), not the output rows: every table is then
// built once, by the one thread that reads it, with no barrier between building and lookups. Each
// thread sums into its own partial output, and the partials are added in a fixed order at the end
// (out * batch adds per thread, small next to the lookups). Output rows are split as well only
// when there are fewer block groups than threads. Int8 tables (int8 activations) are built one
// batch row at a time, so for more than one row the threads split the batch rows instead.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>  // at::get_num_threads

#include <algorithm>
#include <cmath>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/packed_linear.h"
#include "runtime/linear_shape.h"
#include "kernels/kernel_table.h"
#include "runtime/panel_gemm.h"
#include "runtime/tiled_gemm.h"
#include "runtime/worker_pool.h"

namespace qnoise {

namespace {

// Batch-1 tables of one block group fill about half of a 32 KB L1 data cache.
constexpr int64_t kGroupTableBytes = 16 * 1024;

}  // namespace

kernels::PqLutWeight PackedPqLinear::lut_view() const {
  kernels::PqLutWeight w;
  w.codes = codes_.data();
  w.centroids_t = centroids_t_.data();
  w.centroids_q = centroids_q_.data();
  w.centroid_scale = centroid_scale_;
  w.out_padded = out_padded_;
  w.in = in_;
  w.block_size = block_size_;
  w.n_blocks = n_blocks_;
  w.n_centroids = n_centroids_;
  w.k_padded = (n_centroids_ + 7) / 8 * 8;
  w.group_blocks = group_blocks_;
  return w;
}

namespace {

// Batch columns per kernel call: 1 (scalar table values) or a multiple of 8 the AVX2 kernel has a path for.
int64_t lanes_for(int64_t n) {
  if (n == 1) return 1;
  for (int64_t lanes : {8, 16, 32}) if (n <= lanes) return lanes;
  return kernels::kPqMaxLanes;
}

}  // namespace

PackedPqLinear::PackedPqLinear(const CompressedWeight& weight, const RuntimeOptions& options)
    : PackedLinearBase(runtime::linear_out_in(weight, "PackedPqLinear").first,
                       runtime::linear_out_in(weight, "PackedPqLinear").second, options) {
  QNOISE_CHECK(weight.scheme == WeightScheme::PQ, "PackedPqLinear takes a pq weight, got ", to_string(weight.scheme));
  QNOISE_CHECK(weight.block_size >= 1 && in_ % weight.block_size == 0, "PackedPqLinear: block size ",
               weight.block_size, " does not divide the ", in_, " inputs of weight ", shape_to_string(weight.shape));
  weight.validate();  // sizes, and every code below K
  QNOISE_CHECK(weight.codes.scalar_type() == at::kByte && weight.n_centroids() <= 256,
               "PackedPqLinear takes uint8 codes and at most 256 centroids, got K = ", weight.n_centroids());
  block_size_ = weight.block_size;
  n_blocks_ = in_ / block_size_;
  n_centroids_ = weight.n_centroids();
  const int64_t k_padded = (n_centroids_ + 7) / 8 * 8;
  group_blocks_ = std::clamp<int64_t>(kGroupTableBytes / (k_padded * 4), 1,
                                      std::min(n_blocks_, kernels::kPqInt8MaxGroupBlocks));
  out_padded_ = (out_ + kernels::kPqRowGroup - 1) / kernels::kPqRowGroup * kernels::kPqRowGroup;

  // One float copy of the codebook, transposed (the kernels and decoding read it so; a second,
  // untransposed copy was 8 KB per layer at K = 256, d = 8: 12% of the d 256 LM's kernel memory).
  const at::Tensor c = weight.decoded_centroids().contiguous();  // float16, 8- or 4-bit codebooks alike
  const float* centroids = c.data_ptr<float>();
  centroids_t_.assign(static_cast<size_t>(block_size_ * k_padded), 0.0f);
  for (int64_t k = 0; k < n_centroids_; ++k)
    for (int64_t i = 0; i < block_size_; ++i) centroids_t_[i * k_padded + k] = centroids[k * block_size_ + i];

  // Int8-table form: one scale for the codebook, levels offset by 128 in 4-byte words (pq_lut_kernels.h).
  float largest = 0.0f;
  for (float v : centroids_t_) largest = std::max(largest, std::abs(v));
  centroid_scale_ = largest / kernels::kPqCentroidLevels;
  const int64_t block_bytes = kernels::pq_int8_block_bytes(block_size_);
  centroids_q_.assign(static_cast<size_t>(block_bytes * kernels::kPqInt8TableBytes), 128);
  for (int64_t k = 0; k < n_centroids_; ++k)
    for (int64_t i = 0; i < block_size_; ++i) {
      const float level = largest > 0.0f ? std::nearbyint(centroids[k * block_size_ + i] / centroid_scale_) : 0.0f;
      centroids_q_[((i / 4) * kernels::kPqInt8TableBytes + k) * 4 + i % 4] =
          static_cast<uint8_t>(128 + std::clamp<int>(static_cast<int>(level), -kernels::kPqCentroidLevels, kernels::kPqCentroidLevels));
    }

  codes_.assign(static_cast<size_t>(out_padded_ * n_blocks_), 0);
  const at::Tensor src = weight.codes.contiguous();
  const uint8_t* from = src.data_ptr<uint8_t>();
  const auto w = lut_view();
  for (int64_t o = 0; o < out_; ++o)
    for (int64_t j = 0; j < n_blocks_; ++j) codes_[w.code_index(o, j)] = from[o * n_blocks_ + j];
}

int64_t PackedPqLinear::bytes() const {
  return static_cast<int64_t>(codes_.size() + centroids_q_.size() + 4 * centroids_t_.size());
}

at::Tensor PackedPqLinear::decode() const {
  at::Tensor out = at::empty({out_, in_}, at::kFloat);
  for (int64_t o = 0; o < out_; ++o) decode_row(o, out.data_ptr<float>() + o * in_);
  return out;
}

void PackedPqLinear::decode_row(int64_t row, float* out) const {
  const auto w = lut_view();
  const int64_t k_padded = w.k_padded;
  for (int64_t j = 0; j < n_blocks_; ++j) {
    const float* c = centroids_t_.data() + codes_[w.code_index(row, j)];  // value i at i * k_padded
    for (int64_t i = 0; i < block_size_; ++i) out[j * block_size_ + i] = c[i * k_padded];
  }
}

void PackedPqLinear::transposed_product(const float* x, int64_t batch, float* y) const {
  const auto w = lut_view();
  std::vector<float> sums(static_cast<size_t>(n_centroids_));
  for (int64_t b = 0; b < batch; ++b) {
    const float* xb = x + b * out_;
    for (int64_t j = 0; j < n_blocks_; ++j) {
      // Column block j of W is c_{code(o, j)} for every row o, so x W's block j is sum_k s_k c_k,
      // s_k the sum of the x_o whose row has code k there.
      std::fill(sums.begin(), sums.end(), 0.0f);
      const int64_t group = j / group_blocks_, in_group = j - w.group_first_block(group);
      for (int64_t row0 = 0; row0 < out_; row0 += kernels::kPqRowChunk) {
        const int64_t chunk = row0 / kernels::kPqRowChunk;
        // The chunk's codes for block j: one per row, contiguous (pq_lut_kernels.h).
        const uint8_t* code = codes_.data() + w.row_codes(group, row0) + in_group * w.chunk_rows(chunk);
        const int64_t rows = std::min(kernels::kPqRowChunk, out_ - row0);
        for (int64_t r = 0; r < rows; ++r) sums[code[r]] += xb[row0 + r];
      }
      float* yj = y + b * in_ + j * block_size_;
      for (int64_t i = 0; i < block_size_; ++i) {
        const float* c = centroids_t_.data() + i * w.k_padded;  // value i of every centroid
        // Eight partial sums, each a lane the compiler can vectorize (one running sum was a chain
        // of K dependent adds per input: 2.3% of a tied LM's generation, perf).
        float part[8] = {};
        int64_t k = 0;
        for (; k + 8 <= n_centroids_; k += 8)
          for (int l = 0; l < 8; ++l) part[l] += sums[static_cast<size_t>(k + l)] * c[k + l];
        float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        for (; k < n_centroids_; ++k) sum += sums[static_cast<size_t>(k)] * c[k];
        yj[i] += sum;
      }
    }
  }
}

at::Tensor PackedPqLinear::forward(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& row_scale) const {
  QNOISE_CHECK(!row_scale.defined() ||
                   (row_scale.dim() == 1 && row_scale.size(0) == out_ && row_scale.scalar_type() == at::kFloat),
               "PackedPqLinear [", out_, ", ", in_, "]: row scale must be float32 [", out_, "]");
  const at::Tensor scale = row_scale.defined() ? row_scale.contiguous() : row_scale;
  const float* scale_ptr = scale.defined() ? scale.data_ptr<float>() : nullptr;
  return forward_tensor(x, bias, [&](const float* in, int64_t batch, float* out, const float* b) {
    forward(in, batch, out, b, scale_ptr);
  });
}

void PackedPqLinear::forward(const float* x, int64_t batch, float* y, const float* bias,
                             const float* row_scale) const {
  QNOISE_CHECK(batch >= 0, "PackedPqLinear: negative batch ", batch);
  if (batch == 0) return;
  const PqCall call{x, batch, y, bias, row_scale};
  const LinearTuning& tuning = options_.tuning;
  const bool few_rows = out_ < 2 * n_centroids_, medium_rows = out_ < 8 * n_centroids_;
  // With int8 activations every batch row looks up int8 tables (so the layer computes the same
  // function at any batch size), except in layers of few rows, where building and rounding the
  // tables costs more than the lookups save: those keep float tables. On the AVX2 path, whose byte
  // lookups are slower than AVX-512's, int8 tables run at batch 1 only: for a batch, float tables
  // share each lookup among up to 64 batch rows and the GEMM takes large ones (docs/kernels.md).
  const bool int8_tables =
      options_.int8_activations && !few_rows && (kernels_->path != KernelPath::Avx2 || batch == 1);
  if (int8_tables && batch > 1) return int8_table_rows_forward(call);
  if (!int8_tables &&
      (batch >= tuning.pq_gemm_min_batch || (medium_rows && batch >= tuning.pq_medium_out_gemm_min_batch) ||
       (few_rows && batch >= tuning.pq_small_out_gemm_min_batch)))
    return gemm_forward(call);
  lookup_forward(call, int8_tables);
}

// Output o of a batch row from its summed lookups: the row scale, then the bias.
static inline float finish_output(const PackedPqLinear::PqCall& c, int64_t o, float sum) {
  if (c.row_scale) sum *= c.row_scale[o];
  return c.bias ? sum + c.bias[o] : sum;
}

void PackedPqLinear::gemm_forward(const PqCall& c) const {
  const auto& tuning = options_.tuning;
  if (kernels_->panel_gemm != nullptr && tuning.panel_gemm) {
    // The panels take each row's centroid whole: the codebook untransposed, rebuilt per call
    // (K * d values against the batch * out * in multiply-adds) rather than kept twice.
    const auto w = lut_view();
    thread_local std::vector<float> centroids;
    centroids.resize(static_cast<size_t>(n_centroids_ * block_size_));
    for (int64_t k = 0; k < n_centroids_; ++k)
      for (int64_t i = 0; i < block_size_; ++i) centroids[k * block_size_ + i] = centroids_t_[i * w.k_padded + k];
    kernels::PqPanelWeight panel_weight;
    panel_weight.lut = w;
    panel_weight.centroids = centroids.data();
    return runtime::panel_gemm(kernels_->panel_gemm, kernels_->pq_panel_source(panel_weight, c.row_scale), c.x,
                               c.batch, in_, out_, c.bias, c.y, tuning);
  }
  runtime::tiled_gemm(c.x, c.batch, in_, out_, [&](int64_t r0, int64_t r1, float* dst) {
    for (int64_t o = r0; o < r1; ++o) {
      float* row = dst + (o - r0) * in_;
      decode_row(o, row);
      if (c.row_scale)
        for (int64_t i = 0; i < in_; ++i) row[i] *= c.row_scale[o];
    }
  }, c.y, tuning.gemm_tile_floats);
  if (c.bias)
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t o = 0; o < out_; ++o) c.y[b * out_ + o] += c.bias[o];
}

// Int8 tables are built one batch row at a time, so threads split the batch rows; each row's
// groups are summed in order by one thread.
void PackedPqLinear::int8_table_rows_forward(const PqCall& c) const {
  const auto w = int8_table_view();
  const auto int8_kernel = kernels_->pq_int8_lut_group;
  const int64_t scratch_floats = kernels::pq_int8_scratch_bytes(w) / 4 + out_padded_;
  const int64_t work_per_row = out_padded_ * n_blocks_ + n_centroids_ * in_;
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(),
                           c.batch * work_per_row / std::max<int64_t>(1, options_.tuning.min_work_per_thread)));
  runtime::run_parts(parts, [&](int64_t p) {
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(scratch_floats));
    float* partial = scratch.data() + scratch_floats - out_padded_;
    for (int64_t b = p * c.batch / parts; b < (p + 1) * c.batch / parts; ++b) {
      std::fill(partial, partial + out_padded_, 0.0f);
      for (int64_t group = 0; group < w.group_count(); ++group)
        int8_kernel(w, group, 0, out_padded_, c.x + b * in_, reinterpret_cast<uint8_t*>(scratch.data()), partial);
      for (int64_t o = 0; o < out_; ++o) c.y[b * out_ + o] = finish_output(c, o, partial[o]);
    }
  }, runtime::idle_workers(options_.tuning));
}

kernels::PqLutWeight PackedPqLinear::int8_table_view() const {
  auto w = lut_view();
  if (kernels_->pq_level_pairs != nullptr) {
    // The AVX2 kernel multiplies 16-bit levels in input pairs (vpmaddwd): derived from the byte
    // levels per call (K * d values) rather than kept beside them.
    thread_local std::vector<int16_t> levels;
    levels.resize(static_cast<size_t>(kernels::pq_level_pairs_size(w)));
    kernels_->pq_level_pairs(w, levels.data());
    w.centroid_level_pairs = levels.data();
  }
  return w;
}

// Lookups in float tables (any batch, up to kPqMaxLanes batch rows per pass) or in int8 tables
// (batch 1).
void PackedPqLinear::lookup_forward(const PqCall& c, bool int8_tables) const {
  const auto w = int8_tables ? int8_table_view() : lut_view();
  const auto float_kernel = kernels_->pq_lut_group;
  const auto int8_kernel = kernels_->pq_int8_lut_group;
  const auto& tuning = options_.tuning;
  const int64_t n_groups = w.group_count(), row_groups = out_padded_ / kernels::kPqRowGroup;
  const int64_t threads = at::get_num_threads();
  thread_local std::vector<float> workspace;
  for (int64_t b0 = 0; b0 < c.batch; b0 += kernels::kPqMaxLanes) {  // int8 tables: batch 1 here
    const int64_t n = std::min(kernels::kPqMaxLanes, c.batch - b0), lanes = lanes_for(n);
    // Parts: row slices per group only when groups are fewer than threads; no more parts than
    // the work pays for.
    const int64_t row_parts = std::min(row_groups, n_groups >= threads ? 1 : (threads + n_groups - 1) / n_groups);
    const int64_t n_tasks = n_groups * row_parts;
    const int64_t work = out_padded_ * n_blocks_ * lanes + n_centroids_ * in_ * lanes;
    const int64_t parts = std::max<int64_t>(1, std::min({threads, n_tasks, work / tuning.min_work_per_thread}));
    const int64_t xt_floats = lanes == 1 ? 0 : in_ * lanes, partial_floats = out_padded_ * lanes;
    // Per part: the tables (int8 tables: their scratch).
    const int64_t table_floats =
        int8_tables ? kernels::pq_int8_scratch_bytes(w) / 4 : kernels::pq_table_floats(w, lanes);
    // At batch 1 part 0 sums straight into y (when it has the padded rows too) and the other
    // parts' partials are added to it after: a partial read back while y is written stalls the
    // copy loop on its loads (docs/kernels.md).
    const bool into_y = lanes == 1 && out_padded_ == out_;
    const int64_t own_partials = into_y ? parts - 1 : parts;
    workspace.resize(static_cast<size_t>(xt_floats + own_partials * partial_floats + parts * table_floats));
    float* xt = workspace.data();
    float* partials = xt + xt_floats;
    float* tables = partials + own_partials * partial_floats;
    float* y_chunk = c.y + b0 * out_;
    auto partial_of = [&](int64_t p) {
      return into_y ? (p == 0 ? y_chunk : partials + (p - 1) * partial_floats) : partials + p * partial_floats;
    };
    std::fill(partials, partials + own_partials * partial_floats, 0.0f);
    if (into_y) std::fill(y_chunk, y_chunk + out_, 0.0f);
    const float* x_chunk = c.x + b0 * in_;
    if (lanes > 1) {  // transpose to [in][lanes], padding columns zero
      for (int64_t i = 0; i < in_; ++i)
        for (int64_t b = 0; b < lanes; ++b) xt[i * lanes + b] = b < n ? x_chunk[b * in_ + i] : 0.0f;
    }
    const float* activations = lanes == 1 ? x_chunk : xt;
    runtime::run_parts(parts, [&](int64_t p) {
      for (int64_t t = p * n_tasks / parts; t < (p + 1) * n_tasks / parts; ++t) {
        const int64_t group = t / row_parts, slice = t % row_parts;
        const int64_t g0 = slice * row_groups / row_parts, g1 = (slice + 1) * row_groups / row_parts;
        float* part_tables = tables + p * table_floats;
        float* partial = partial_of(p);
        if (int8_tables)
          int8_kernel(w, group, g0 * kernels::kPqRowGroup, g1 * kernels::kPqRowGroup, activations,
                      reinterpret_cast<uint8_t*>(part_tables), partial);
        else
          float_kernel(w, group, g0 * kernels::kPqRowGroup, g1 * kernels::kPqRowGroup, activations, lanes,
                       part_tables, partial);
      }
    }, runtime::idle_workers(tuning));
    if (into_y) {
      for (int64_t p = 1; p < parts; ++p) {
        const float* part = partial_of(p);
        for (int64_t o = 0; o < out_; ++o) y_chunk[o] += part[o];
      }
      if (c.row_scale || c.bias)
        for (int64_t o = 0; o < out_; ++o) y_chunk[o] = finish_output(c, o, y_chunk[o]);
      continue;
    }
    for (int64_t b = 0; b < n; ++b) {
      float* yb = c.y + (b0 + b) * out_;
      for (int64_t o = 0; o < out_; ++o) {
        float sum = partials[o * lanes + b];
        for (int64_t p = 1; p < parts; ++p) sum += partials[p * partial_floats + o * lanes + b];
        yb[o] = finish_output(c, o, sum);
      }
    }
  }
}

}  // namespace qnoise
