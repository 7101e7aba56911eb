// Every SIMD kernel this CPU runs against its reference, bit for bit, and the int4 batch-1 kernels'
// times, with no torch: the kernel files alone, linked statically, so the binary can be copied to a
// machine whose CPU has what this one lacks (AVX-512) but no libtorch (the lent GPU machines).
// The test suite checks the same properties through the layers where libtorch is installed.
//
//   build/bench/kernel_check
//
// Exit status 1 when a kernel differs from its reference. Random data; 1 thread.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "random_pq_weight.h"
#include "kernels/int4_fixed_point.h"
#include "kernels/pq_lut_kernels.h"
#include "kernels/scalar_linear_kernels.h"

namespace {

using namespace qnoise::kernels;

std::mt19937 random_bits(7);
bool avx512 = false;
int failures = 0;

// One line per check: what was compared, on which instruction set.
void report(const std::string& what, const char* isa, bool same) {
  if (!same) ++failures;
  std::printf("%-58s %s\n", (what + ", " + isa).c_str(), same ? "bit-equal" : "DIFFERS from the reference");
}

std::string shape(int64_t out, int64_t in) { return std::to_string(out) + "x" + std::to_string(in); }

std::vector<float> normal_vector(int64_t n, float sigma) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(random_bits);
  return v;
}

// PQ with int8 tables: the AVX2 and AVX-512 group kernels against the reference over all groups.
void check_pq_int8_tables(int64_t out, int64_t in, int64_t d, int64_t n_centroids) {
  const qnoise::bench::RandomPqInt8Weight weight(out, in, d, n_centroids, random_bits);
  const PqLutWeight& w = weight.view;
  const auto x = normal_vector(in, 1.0f);
  auto run = [&](auto kernel) {
    std::vector<uint8_t> scratch(static_cast<size_t>(pq_int8_scratch_bytes(w)));
    std::vector<float> y(static_cast<size_t>(out), 0.0f);
    for (int64_t group = 0; group < w.group_count(); ++group)
      kernel(w, group, 0, out, x.data(), scratch.data(), y.data());
    return y;
  };
  const auto expected = run(pq_int8_lut_group_reference);
  const std::string what =
      "PQ int8 tables " + shape(out, in) + " d=" + std::to_string(d) + " K=" + std::to_string(n_centroids);
  report(what, "avx2", run(pq_int8_lut_group_avx2) == expected);
  if (avx512) report(what, "avx512", run(pq_int8_lut_group_avx512) == expected);
}

// An int8/int4 weight in the kernels' layout with random codes and affine parameters.
struct ScalarWeight {
  std::vector<uint8_t> codes;
  std::vector<float> scale, zero_point;
  ScalarLinearWeight view;
  ScalarWeight(int bits, int64_t out, int64_t in) {
    view.bits = bits;
    view.in = in;
    view.row_bytes = bits == 8 ? in : int4_row_bytes(in);
    codes.assign(static_cast<size_t>(out * view.row_bytes), 0);
    const uint32_t levels = bits == 8 ? 256 : 16;
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) {
        const auto q = static_cast<uint8_t>(random_bits() % levels);
        uint8_t* row = codes.data() + o * view.row_bytes;
        if (bits == 8)
          row[i] = q;
        else
          set_int4_code(row, i, q);
      }
      scale.push_back(0.01f + static_cast<float>(random_bits() % 100) * 1e-4f);
      zero_point.push_back(static_cast<float>(random_bits() % levels));
    }
    view.codes = codes.data();
    view.scale = scale.data();
    view.zero_point = zero_point.data();
  }
};

// int8 activations (both ISAs) and, for int4, the fixed-point kernels against their references.
void check_scalar(int bits, int64_t out, int64_t in) {
  const ScalarWeight weight(bits, out, in);
  const auto& w = weight.view;
  const auto x = normal_vector(in, 3.0f);
  std::vector<int8_t> xq(static_cast<size_t>(in));
  float x_scale = 0.0f;
  const int32_t xq_sum = quantize_activations(x.data(), in, xq.data(), &x_scale);
  std::vector<float> expected(static_cast<size_t>(out)), got(static_cast<size_t>(out));
  int8_activation_matvec_reference(w, xq.data(), xq_sum, x_scale, 0, out, expected.data());
  int8_activation_matvec_avx2(w, xq.data(), xq_sum, x_scale, 0, out, got.data());
  const std::string what = "int" + std::to_string(bits) + " " + shape(out, in);
  report(what + " int8 activations", "avx2", got == expected);
  if (avx512) {
    int8_activation_matvec_avx512_vnni(w, xq.data(), xq_sum, x_scale, 0, out, got.data());
    report(what + " int8 activations", "avx512", got == expected);
  }
  if (bits != 4) return;
  std::vector<int32_t> levels(static_cast<size_t>(in)), simd_levels(static_cast<size_t>(in));
  std::vector<int8_t> digits(static_cast<size_t>(fixed_point_digit_bytes(in)));
  float step = 0.0f, simd_step = 0.0f;
  int64_t level_sum = 0, simd_level_sum = 0;
  fixed_point_activations(x.data(), in, levels.data(), &step, &level_sum);
  fixed_point_activations_avx2(x.data(), in, simd_levels.data(), digits.data(), &simd_step, &simd_level_sum);
  report(what + " fixed-point levels", "avx2", simd_levels == levels && simd_step == step && simd_level_sum == level_sum);
  int4_fixed_point_matvec_reference(w, levels.data(), level_sum, step, 0, out, expected.data());
  int4_fixed_point_matvec_avx2(w, digits.data(), levels.data(), level_sum, step, 0, out, got.data());
  report(what + " fixed point", "avx2", got == expected);
  if (avx512) {
    int4_fixed_point_matvec_avx512_vnni(w, digits.data(), levels.data(), level_sum, step, 0, out, got.data());
    report(what + " fixed point", "avx512", got == expected);
  }
}

template <typename Call>
double median_us(const Call& call, int calls) {
  std::vector<double> times;
  for (int c = 0; c < calls; ++c) {
    const auto start = std::chrono::steady_clock::now();
    call();
    times.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Batch-1 int4 n x n: the float-activation kernel against the fixed-point ones (activations'
// preparation included), three rounds of medians.
void time_int4(int64_t n) {
  const ScalarWeight weight(4, n, n);
  const auto& w = weight.view;
  const auto x = normal_vector(n, 1.0f);
  float x_sum = 0.0f;
  for (float v : x) x_sum += v;
  std::vector<float> y(static_cast<size_t>(n));
  std::vector<int32_t> levels(static_cast<size_t>(n));
  std::vector<int8_t> digits(static_cast<size_t>(fixed_point_digit_bytes(n)));
  const int calls = n >= 4096 ? 200 : 3000;
  auto fixed_point = [&](auto kernel) {
    return median_us(
        [&] {
          float step;
          int64_t level_sum;
          fixed_point_activations_avx2(x.data(), n, levels.data(), digits.data(), &step, &level_sum);
          kernel(w, digits.data(), levels.data(), level_sum, step, 0, n, y.data());
        },
        calls);
  };
  for (int round = 0; round < 3; ++round) {
    const double float_us = median_us([&] { scalar_matvec_avx2(w, x.data(), x_sum, 0, n, y.data()); }, calls);
    const double avx2_us = fixed_point(int4_fixed_point_matvec_avx2);
    std::printf("int4 %lldx%lld batch 1: float-activation kernel %.1f us, fixed point avx2 %.1f us (%.2fx)",
                static_cast<long long>(n), static_cast<long long>(n), float_us, avx2_us, float_us / avx2_us);
    if (avx512) {
      const double avx512_us = fixed_point(int4_fixed_point_matvec_avx512_vnni);
      std::printf(", avx512 vnni %.1f us (%.2fx)", avx512_us, float_us / avx512_us);
    }
    std::printf("\n");
  }
}

}  // namespace

int main() {
  if (!cpu_has_avx2_fma()) {
    std::printf("kernel_check: no AVX2+FMA on this CPU, so no SIMD kernel to check\n");
    return 0;
  }
  avx512 = cpu_has_avx512_vnni_vbmi();
  std::printf("AVX-512 VNNI+VBMI: %s\n", avx512 ? "yes, checked too" : "no, AVX2 only");
  const std::vector<std::array<int64_t, 4>> pq_shapes = {{64, 64, 8, 256},      {72, 1024, 8, 256},
                                                         {136, 1000, 4, 256},   {8, 48, 16, 256},
                                                         {200, 1040, 1040, 256}, {16, 1044, 1044, 256},
                                                         {64, 96, 8, 100},      {4096, 4096, 8, 256}};
  for (const auto& [out, in, d, k] : pq_shapes) check_pq_int8_tables(out, in, d, k);
  const std::vector<std::array<int64_t, 2>> scalar_shapes = {{1, 1},   {5, 31},    {7, 33},   {9, 100},
                                                             {6, 160}, {66, 257},  {3, 1030}, {5, 4096 + 160 + 7},
                                                             {4, 8192 + 300}};
  for (int bits : {8, 4})
    for (const auto& [out, in] : scalar_shapes) check_scalar(bits, out, in);
  time_int4(4096);
  time_int4(1024);
  std::printf("%d kernel(s) differ from their reference\n", failures);
  return failures == 0 ? 0 : 1;
}
