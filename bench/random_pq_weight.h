#pragma once
// A PQ weight with random codes and int8 centroids in the group kernels' layout
// (pq_lut_kernels.h), for the programs that run those kernels without a layer
// (bench_pq_int8_tables, kernel_check). Random codes are as good as real ones for timing and for
// comparing kernels; the layer builds real ones (PackedPqLinear).
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/pq_lut_kernels.h"

namespace qnoise::bench {

struct RandomPqInt8Weight {
  std::vector<uint8_t> codes, centroids_q;
  std::vector<int16_t> level_pairs;
  kernels::PqLutWeight view;

  // d must divide in, and out be a multiple of kernels::kPqRowGroup.
  RandomPqInt8Weight(int64_t out, int64_t in, int64_t d, int64_t n_centroids, std::mt19937& random) {
    using namespace kernels;
    codes.resize(static_cast<size_t>(out * (in / d)));
    for (auto& c : codes) c = static_cast<uint8_t>(random() % n_centroids);
    // Levels cq + 128 in [1, 255]; 128 (zero) in the padding and beyond K.
    centroids_q.assign(static_cast<size_t>(pq_int8_block_bytes(d) * kPqInt8TableBytes), 128);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t k = 0; k < n_centroids; ++k)
        centroids_q[static_cast<size_t>(((i / 4) * 256 + k) * 4 + i % 4)] = static_cast<uint8_t>(1 + random() % 255);
    view.codes = codes.data();
    view.centroids_q = centroids_q.data();
    view.centroid_scale = 0.01f;
    view.out_padded = out;
    view.in = in;
    view.block_size = d;
    view.n_blocks = in / d;
    view.n_centroids = n_centroids;
    view.k_padded = (n_centroids + 7) / 8 * 8;
    view.group_blocks = std::min<int64_t>(16, view.n_blocks);  // PackedPqLinear's choice at K = 256
    // The AVX2 kernel's 16-bit level pairs (PackedPqLinear derives them per call).
    if (cpu_has_avx2_fma()) {
      level_pairs.resize(static_cast<size_t>(pq_level_pairs_size(view)));
      pq_level_pairs_avx2(view, level_pairs.data());
      view.centroid_level_pairs = level_pairs.data();
    }
  }
};

}  // namespace qnoise::bench
