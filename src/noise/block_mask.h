#pragma once
// Bernoulli(rate) choice of blocks as a pure function of (seed, block index): a counter-based
// 32-bit hash (Wellons' "lowbias32" mixer) of the block index and the seed. Any thread can draw
// any range of blocks, SIMD kernels hash eight blocks at once, and the fused kernels and the
// reference path draw the same mask. The rate is honoured to 2^-24; block indices are taken
// modulo 2^32 (a weight of more than four billion blocks would repeat its mask).
#include <cstdint>

#include "quant/affine_qparams.h"  // QNOISE_ALWAYS_INLINE

namespace qnoise {

class BlockMaskSampler {
 public:
  static constexpr uint32_t kIndexMultiplier = 0x9E3779B9u;  // spreads consecutive indices
  static constexpr uint32_t kMix1 = 0x7feb352du;
  static constexpr uint32_t kMix2 = 0x846ca68bu;

  BlockMaskSampler(double rate, uint64_t seed);

  QNOISE_ALWAYS_INLINE static uint32_t mix(uint32_t x) {
    x ^= x >> 16;
    x *= kMix1;
    x ^= x >> 15;
    x *= kMix2;
    x ^= x >> 16;
    return x;
  }
  QNOISE_ALWAYS_INLINE bool chosen(int64_t block) const {
    return (mix(static_cast<uint32_t>(block) * kIndexMultiplier + key_) >> 8) < threshold_;
  }
  // Fills mask[0..n) for blocks first .. first + n - 1.
  void fill(int64_t first, int64_t n, bool* mask) const;

  uint32_t key() const { return key_; }
  uint32_t threshold() const { return threshold_; }  // chosen when (hash >> 8) < threshold
  // The probability actually used: round(rate * 2^24) / 2^24.
  double effective_rate() const { return threshold_ / 16777216.0; }

 private:
  uint32_t key_;
  uint32_t threshold_;  // 0 .. 2^24
};

}  // namespace qnoise
