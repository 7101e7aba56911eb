// Where the time of a PQ layer with int8 tables goes (pq_lut_kernels.h, pq_int8_lut_group_*): the
// group kernel timed over all of a layer's block groups, once looking up every output row and once
// looking up none (building the tables only), calls of the two interleaved; medians.
//
//   build/bench/bench_pq_int8_tables [--out N] [--in N] [--d N] [--reps N]
//
// Random codes, codebook and activations (speed does not depend on their values). The kernel is the
// widest the CPU has: AVX-512, else AVX2, else the reference (said so). 1 thread, no driver: the
// layer-level figures are bench_linear_kernels'.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "random_pq_weight.h"
#include "kernels/pq_lut_kernels.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qnoise::kernels;
  int64_t out = 1024, in = 1024, d = 8, reps = 2000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    int64_t* target = arg == "--out" ? &out : arg == "--in" ? &in : arg == "--d" ? &d : arg == "--reps" ? &reps : nullptr;
    if (target == nullptr || i + 1 >= argc || (*target = std::atoll(argv[++i])) <= 0) {
      std::fprintf(stderr, "bench_pq_int8_tables: bad or unknown option '%s' (--out, --in, --d, --reps take a positive number)\n", arg.c_str());
      return 1;
    }
  }
  if (in % d != 0 || out % kPqRowGroup != 0) {
    std::fprintf(stderr, "bench_pq_int8_tables: d must divide --in and --out must be a multiple of %lld\n",
                 static_cast<long long>(kPqRowGroup));
    return 1;
  }
  constexpr int64_t kCentroids = 256;
  std::mt19937 random(1);
  const qnoise::bench::RandomPqInt8Weight weight(out, in, d, kCentroids, random);
  const PqLutWeight& w = weight.view;
  std::vector<float> x(static_cast<size_t>(in));
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(random);
  std::vector<uint8_t> scratch(static_cast<size_t>(pq_int8_scratch_bytes(w)));
  std::vector<float> y(static_cast<size_t>(out));
  const bool avx512 = cpu_has_avx512_vnni_vbmi(), avx2 = cpu_has_avx2_fma();
  const auto kernel = avx512 ? pq_int8_lut_group_avx512 : avx2 ? pq_int8_lut_group_avx2 : pq_int8_lut_group_reference;

  std::vector<double> full, tables_only;
  for (int64_t rep = 0; rep < 2 * reps; ++rep) {
    const bool lookups = rep % 2 == 0;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t group = 0; group < w.group_count(); ++group)
      kernel(w, group, 0, lookups ? out : 0, x.data(), scratch.data(), y.data());
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    (lookups ? full : tables_only).push_back(us);
  }
  const double all = median(full), tables = median(tables_only);
  std::printf("%lldx%lld d %lld K %lld, %s kernel, medians of %lld calls each\n", static_cast<long long>(out),
              static_cast<long long>(in), static_cast<long long>(d), static_cast<long long>(kCentroids),
              avx512 ? "AVX-512" : avx2 ? "AVX2" : "reference (no AVX2 on this CPU)", static_cast<long long>(reps));
  std::printf("layer %.2f us: tables %.2f us, lookups %.2f us (the difference)\n", all, tables, all - tables);
  return 0;
}
