#include "quant/kmeans.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <random>
#include <unordered_set>
#include <utility>
#include <vector>

#include "qnoise/error.h"
#include "quant/nearest_centroid.h"

namespace qnoise {

namespace {

// Rows summed together in one task: fixed, so sums do not depend on the thread count.
constexpr int64_t kSumChunkRows = 4096;
// k-means++ runs on at most max(kPlusPlusRowsPerCentroid * K, kPlusPlusMinRows) rows.
constexpr int64_t kPlusPlusRowsPerCentroid = 40;
constexpr int64_t kPlusPlusMinRows = int64_t{1} << 16;
// Values (rows x d) per k-means++ task: a round at the default sample size (65536 x 8, ~0.15 ms)
// runs faster on one thread than it takes to wake another with OMP_WAIT_POLICY=passive.
constexpr int64_t kPlusPlusValuesPerTask = int64_t{1} << 21;
// M-step partial sums: rows per chunk, and a cap on chunks * K * d doubles (32 MiB).
constexpr int64_t kMeanChunkRows = 16384;
constexpr int64_t kMaxPartialSumValues = int64_t{1} << 22;
// Relative size of the perturbation that separates the two halves of a split cluster.
constexpr float kSplitPerturbation = 1e-4f;

// A read-only [n, dim] row-major float matrix.
struct Rows {
  const float* data;
  int64_t n;
  int64_t dim;
  const float* row(int64_t i) const { return data + i * dim; }
};

Rows rows_of(const at::Tensor& data) {
  QNOISE_CHECK(data.dim() == 2 && data.scalar_type() == at::kFloat && data.is_contiguous() &&
                   data.device().is_cpu(),
               "k-means needs a contiguous float32 CPU [n, d] matrix");
  return Rows{data.data_ptr<float>(), data.size(0), data.size(1)};
}

// ---- Seeded randomness (std distributions differ between standard libraries) ----

// Uniform in [0, bound), without modulo bias.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % bound;
  uint64_t value = rng();
  while (value >= limit) value = rng();
  return value % bound;
}

// Uniform in [0, 1) with 53 random bits.
double uniform_unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// `count` distinct indices in [0, n), in draw order.
std::vector<int64_t> sample_distinct_rows(int64_t n, int64_t count, std::mt19937_64& rng) {
  std::vector<int64_t> chosen;
  chosen.reserve(static_cast<size_t>(count));
  if (count * 2 > n) {  // dense: partial Fisher-Yates shuffle
    std::vector<int64_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), int64_t{0});
    for (int64_t i = 0; i < count; ++i) {
      std::swap(all[i], all[i + uniform_below(rng, static_cast<uint64_t>(n - i))]);
      chosen.push_back(all[i]);
    }
    return chosen;
  }
  std::unordered_set<int64_t> seen;  // sparse: rejection, at most 2 draws per row on average
  seen.reserve(static_cast<size_t>(count) * 2);
  while (static_cast<int64_t>(chosen.size()) < count) {
    const auto i = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(n)));
    if (seen.insert(i).second) chosen.push_back(i);
  }
  return chosen;
}

at::Tensor gather_rows(const Rows& rows, const std::vector<int64_t>& indices) {
  at::Tensor out = at::empty({static_cast<int64_t>(indices.size()), rows.dim}, at::kFloat);
  float* dst = out.data_ptr<float>();
  for (size_t i = 0; i < indices.size(); ++i)
    std::copy_n(rows.row(indices[i]), rows.dim, dst + static_cast<int64_t>(i) * rows.dim);
  return out;
}

// ---- k-means++ ----

// The k-means++ sample stored column by column ([d][n]): the D^2 update then runs down
// contiguous columns and vectorizes across rows.
struct Columns {
  const float* data;
  int64_t n;
  int64_t dim;
  const float* column(int64_t j) const { return data + j * n; }
};

// Sum in double with four interleaved accumulators: one chain would wait on every addition's
// latency (a third of the k-means++ time). The order is fixed by the code, so results are too.
double sum_in_fixed_order(const float* values, int64_t count) {
  double partial[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= count; i += 4)
    for (int lane = 0; lane < 4; ++lane) partial[lane] += values[i + lane];
  for (; i < count; ++i) partial[0] += values[i];
  return (partial[0] + partial[1]) + (partial[2] + partial[3]);
}

// min_distance[i] = min(min_distance[i], ||x_i - centroid||^2); chunk_sums[c] = sum over chunk c.
void lower_min_distances(const Columns& sample, const float* centroid,
                         std::vector<float>& min_distance, std::vector<double>& chunk_sums) {
  const auto n_chunks = static_cast<int64_t>(chunk_sums.size());
  const int64_t chunks_per_task =
      std::max<int64_t>(1, kPlusPlusValuesPerTask / (kSumChunkRows * sample.dim));
  at::parallel_for(0, n_chunks, chunks_per_task, [&](int64_t chunk_begin, int64_t chunk_end) {
    std::vector<float> distance(static_cast<size_t>(kSumChunkRows));
    for (int64_t c = chunk_begin; c < chunk_end; ++c) {
      const int64_t begin = c * kSumChunkRows;
      const int64_t count = std::min(sample.n - begin, kSumChunkRows);
      std::fill_n(distance.begin(), count, 0.0f);
      for (int64_t j = 0; j < sample.dim; ++j) {
        const float* x = sample.column(j) + begin;
        const float center = centroid[j];
        float* dist = distance.data();
#pragma omp simd
        for (int64_t i = 0; i < count; ++i) dist[i] += (x[i] - center) * (x[i] - center);
      }
      float* min_dist = min_distance.data() + begin;
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) min_dist[i] = std::min(min_dist[i], distance[i]);
      chunk_sums[c] = sum_in_fixed_order(min_dist, count);
    }
  });
}

// A row drawn with probability weight[i] / total (D^2 sampling); uniform when all weights are 0.
int64_t draw_proportional(const std::vector<float>& weight, const std::vector<double>& chunk_sums,
                          std::mt19937_64& rng) {
  const double total = std::accumulate(chunk_sums.begin(), chunk_sums.end(), 0.0);
  const auto n = static_cast<int64_t>(weight.size());
  if (!(total > 0.0)) return static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(n)));
  double target = uniform_unit(rng) * total;
  size_t chunk = 0;
  while (chunk + 1 < chunk_sums.size() && target >= chunk_sums[chunk])
    target -= chunk_sums[chunk++];
  const int64_t begin = static_cast<int64_t>(chunk) * kSumChunkRows;
  const int64_t end = std::min(n, begin + kSumChunkRows);
  for (int64_t i = begin; i < end; ++i) {
    if (target < weight[i] && weight[i] > 0.0f) return i;
    target -= weight[i];
  }
  // Rounding ran past the end: take the last row that can still be drawn.
  for (int64_t i = n - 1; i >= 0; --i)
    if (weight[i] > 0.0f) return i;
  return 0;
}

// ---- E-step ----

double assign_to_nearest(const Rows& rows, const float* centroids, int64_t n_centroids,
                         int64_t chunk_rows, std::vector<int32_t>& assignment,
                         std::vector<float>& distance) {
  const kernels::CentroidPanelStorage storage(centroids, n_centroids, rows.dim);
  const kernels::CentroidPanel panel = storage.panel();
  for (int64_t begin = 0; begin < rows.n; begin += chunk_rows) {
    const int64_t count = std::min(chunk_rows, rows.n - begin);
    kernels::nearest_centroid(rows.row(begin), count, panel, assignment.data() + begin,
                              distance.data() + begin);
  }
  double objective = 0.0;
  for (float d : distance) objective += d;
  return objective;
}

// ---- Empty-cluster repair ----

using ClusterMembers = std::vector<std::vector<int64_t>>;

ClusterMembers members_by_cluster(const std::vector<int32_t>& assignment, int64_t n_centroids) {
  ClusterMembers members(static_cast<size_t>(n_centroids));
  for (size_t i = 0; i < assignment.size(); ++i)
    members[assignment[i]].push_back(static_cast<int64_t>(i));
  return members;
}

// Moves part of `donor`'s rows to the empty cluster `target`: the centroids become c -/+ a tiny
// perturbation along a random sign vector and each row goes to the nearer one, i.e. by the sign
// of its projection. Both halves are non-empty (median split when the projections are one-sided),
// and any split followed by the M-step cannot raise the objective.
void split_cluster(const Rows& rows, int64_t donor, int64_t target, float* centroids,
                   ClusterMembers& members, std::mt19937_64& rng) {
  const int64_t dim = rows.dim;
  float* donor_centroid = centroids + donor * dim;
  float* target_centroid = centroids + target * dim;
  std::vector<float> direction(static_cast<size_t>(dim));
  for (float& s : direction) s = (rng() & 1) ? 1.0f : -1.0f;

  std::vector<std::pair<double, int64_t>> projected;
  for (int64_t i : members[donor]) {
    double projection = 0.0;
    for (int64_t j = 0; j < dim; ++j)
      projection += (double(rows.row(i)[j]) - donor_centroid[j]) * direction[j];
    projected.emplace_back(projection, i);
  }
  std::vector<int64_t> stay, move;
  for (const auto& [projection, i] : projected) (projection > 0.0 ? move : stay).push_back(i);
  if (stay.empty() || move.empty()) {
    std::sort(projected.begin(), projected.end());
    const size_t half = projected.size() / 2;
    stay.clear();
    move.clear();
    for (size_t r = 0; r < projected.size(); ++r)
      (r < half ? stay : move).push_back(projected[r].second);
  }
  for (int64_t j = 0; j < dim; ++j) {
    const float step = kSplitPerturbation * (std::abs(donor_centroid[j]) + 1e-3f) * direction[j];
    target_centroid[j] = donor_centroid[j] + step;
    donor_centroid[j] -= step;
  }
  members[donor] = std::move(stay);
  members[target] = std::move(move);
}

// The most populated cluster with at least 2 rows (lowest index on ties), or -1.
// Heap entries are (size, -index); stale ones (size changed since) are skipped.
int64_t pop_largest(std::priority_queue<std::pair<int64_t, int64_t>>& heap,
                    const ClusterMembers& members) {
  while (!heap.empty()) {
    const auto [size, minus_index] = heap.top();
    heap.pop();
    if (size >= 2 && static_cast<int64_t>(members[-minus_index].size()) == size)
      return -minus_index;
  }
  return -1;
}

// Gives every empty cluster half of the currently most populated one. Returns how many it filled.
int64_t repair_empty_clusters(const Rows& rows, float* centroids, int64_t n_centroids,
                              std::vector<int32_t>& assignment, std::mt19937_64& rng) {
  std::vector<int64_t> counts(static_cast<size_t>(n_centroids), 0);
  for (int32_t a : assignment) ++counts[a];
  std::vector<int64_t> empty;
  for (int64_t k = 0; k < n_centroids; ++k)
    if (counts[k] == 0) empty.push_back(k);
  if (empty.empty()) return 0;

  ClusterMembers members = members_by_cluster(assignment, n_centroids);
  std::priority_queue<std::pair<int64_t, int64_t>> heap;
  for (int64_t k = 0; k < n_centroids; ++k) heap.emplace(counts[k], -k);
  int64_t repaired = 0;
  for (int64_t target : empty) {
    const int64_t donor = pop_largest(heap, members);
    if (donor < 0) break;  // fewer rows than clusters: nothing left to split
    split_cluster(rows, donor, target, centroids, members, rng);
    for (int64_t i : members[target]) assignment[i] = static_cast<int32_t>(target);
    heap.emplace(static_cast<int64_t>(members[donor].size()), -donor);
    heap.emplace(static_cast<int64_t>(members[target].size()), -target);
    ++repaired;
  }
  return repaired;
}

// ---- M-step ----

// Per-cluster sums (double) and counts of rows [begin, end), added in row order.
void accumulate_clusters(const Rows& rows, const std::vector<int32_t>& assignment, int64_t begin,
                         int64_t end, double* sums, int64_t* counts) {
  const int64_t dim = rows.dim;
  for (int64_t i = begin; i < end; ++i) {
    const int32_t k = assignment[i];
    ++counts[k];
    const float* x = rows.row(i);
    double* sum = sums + k * dim;
    for (int64_t j = 0; j < dim; ++j) sum[j] += x[j];
  }
}

// Each centroid becomes the mean of its rows; clusters without rows keep their centroid. Rows
// stream in order into per-chunk partial sums (cache-friendly, unlike gathering each cluster's
// rows); the chunking depends only on n, K and d, so the result does not depend on the thread
// count.
void update_centroids(const Rows& rows, const std::vector<int32_t>& assignment, int64_t n_centroids,
                      float* centroids) {
  const int64_t dim = rows.dim;
  const int64_t cluster_values = n_centroids * dim;
  const int64_t max_chunks = std::max<int64_t>(1, kMaxPartialSumValues / cluster_values);
  const int64_t n_chunks = std::min(max_chunks, (rows.n + kMeanChunkRows - 1) / kMeanChunkRows);
  const int64_t chunk_rows = (rows.n + n_chunks - 1) / n_chunks;
  std::vector<double> sums(static_cast<size_t>(n_chunks * cluster_values), 0.0);
  std::vector<int64_t> counts(static_cast<size_t>(n_chunks * n_centroids), 0);
  at::parallel_for(0, n_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    for (int64_t c = chunk_begin; c < chunk_end; ++c)
      accumulate_clusters(rows, assignment, c * chunk_rows, std::min(rows.n, (c + 1) * chunk_rows),
                          sums.data() + c * cluster_values, counts.data() + c * n_centroids);
  });
  for (int64_t c = 1; c < n_chunks; ++c) {  // reduce into chunk 0, in chunk order
    for (int64_t v = 0; v < cluster_values; ++v) sums[v] += sums[c * cluster_values + v];
    for (int64_t k = 0; k < n_centroids; ++k) counts[k] += counts[c * n_centroids + k];
  }
  for (int64_t k = 0; k < n_centroids; ++k) {
    if (counts[k] == 0) continue;
    for (int64_t j = 0; j < dim; ++j)
      centroids[k * dim + j] = static_cast<float>(sums[k * dim + j] / counts[k]);
  }
}

void check_centroid_count(const Rows& rows, int64_t n_centroids) {
  QNOISE_CHECK(n_centroids >= 1 && n_centroids <= rows.n,
               "k-means needs 1 <= K <= n rows, got K = ", n_centroids, " and ", rows.n, " rows");
}

}  // namespace

at::Tensor kmeans_init_sampled(const at::Tensor& data, int64_t n_centroids, uint64_t seed) {
  const Rows rows = rows_of(data);
  check_centroid_count(rows, n_centroids);
  std::mt19937_64 rng(seed);
  return gather_rows(rows, sample_distinct_rows(rows.n, n_centroids, rng));
}

at::Tensor kmeans_init_plus_plus(const at::Tensor& data, int64_t n_centroids, uint64_t seed) {
  const Rows rows = rows_of(data);
  check_centroid_count(rows, n_centroids);
  std::mt19937_64 rng(seed);
  const int64_t sample_size =
      std::min(rows.n, std::max(kPlusPlusRowsPerCentroid * n_centroids, kPlusPlusMinRows));
  at::Tensor sample = data;
  if (sample_size < rows.n)
    sample = gather_rows(rows, sample_distinct_rows(rows.n, sample_size, rng));
  const at::Tensor column_major = sample.t().contiguous();
  const Columns columns{column_major.data_ptr<float>(), sample_size, rows.dim};

  at::Tensor centroids = at::empty({n_centroids, rows.dim}, at::kFloat);
  float* out = centroids.data_ptr<float>();
  std::vector<float> min_distance(static_cast<size_t>(sample_size),
                                  std::numeric_limits<float>::infinity());
  std::vector<double> chunk_sums(
      static_cast<size_t>((sample_size + kSumChunkRows - 1) / kSumChunkRows));
  int64_t chosen = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(sample_size)));
  for (int64_t k = 0; k < n_centroids; ++k) {
    float* centroid = out + k * rows.dim;
    for (int64_t j = 0; j < rows.dim; ++j) centroid[j] = columns.column(j)[chosen];
    if (k + 1 == n_centroids) break;
    lower_min_distances(columns, centroid, min_distance, chunk_sums);
    chosen = draw_proportional(min_distance, chunk_sums, rng);
  }
  return centroids;
}

KMeansResult kmeans(const at::Tensor& data, const ProductQuantizerOptions& options,
                    const at::Tensor& initial_centroids) {
  const Rows rows = rows_of(data);
  QNOISE_CHECK(options.n_iterations >= 0, "k-means needs n_iterations >= 0, got ",
               options.n_iterations);
  QNOISE_CHECK(options.chunk_blocks >= 1, "k-means needs chunk_blocks >= 1, got ",
               options.chunk_blocks);
  at::Tensor centroids;
  if (initial_centroids.defined()) {
    centroids = initial_centroids.to(at::kFloat).contiguous().clone();
    QNOISE_CHECK(centroids.dim() == 2 && centroids.size(1) == rows.dim,
                 "initial codebook must be [K, ", rows.dim, "]");
  } else if (options.init == KMeansInit::KMeansPlusPlus) {
    centroids = kmeans_init_plus_plus(data, options.n_centroids, options.seed);
  } else {
    centroids = kmeans_init_sampled(data, options.n_centroids, options.seed);
  }
  const int64_t n_centroids = centroids.size(0);
  check_centroid_count(rows, n_centroids);

  float* centroid_data = centroids.data_ptr<float>();
  std::vector<int32_t> assignment(static_cast<size_t>(rows.n));
  std::vector<float> distance(static_cast<size_t>(rows.n));
  // Its own stream, so repairs are seeded even when the caller gives the initial codebook.
  std::mt19937_64 repair_rng(options.seed ^ 0x9E3779B97F4A7C15ull);
  KMeansResult result;
  for (int iteration = 0; iteration < options.n_iterations; ++iteration) {
    result.stats.objective.push_back(assign_to_nearest(rows, centroid_data, n_centroids,
                                                       options.chunk_blocks, assignment, distance));
    result.stats.n_empty_repaired +=
        repair_empty_clusters(rows, centroid_data, n_centroids, assignment, repair_rng);
    update_centroids(rows, assignment, n_centroids, centroid_data);
  }
  result.centroids = centroids;
  return result;
}

}  // namespace qnoise
