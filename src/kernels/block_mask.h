#pragma once
// Bernoulli(rate) choice of blocks as a pure function of (seed, block index): a counter-based
// 32-bit hash (Wellons' "lowbias32" mixer) of the index pair (2i, 2i+1) and the seed gives two
// 16-bit uniforms, one per block. Any thread can draw any range of blocks, SIMD kernels hash eight
// pairs at once, and the fused kernels and the reference path draw the same mask. The rate is
// honoured to 2^-16; block indices are taken modulo 2^33 (a weight of more than eight billion
// blocks would repeat its mask).
#include <cstdint>

#include "kernels/affine_qparams.h"  // QNOISE_ALWAYS_INLINE

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
  // The 32 random bits shared by blocks 2 * pair and 2 * pair + 1.
  QNOISE_ALWAYS_INLINE uint32_t pair_bits(int64_t pair) const {
    return mix(static_cast<uint32_t>(pair) * kIndexMultiplier + key_);
  }
  QNOISE_ALWAYS_INLINE bool chosen(int64_t block) const {
    return ((pair_bits(block >> 1) >> ((block & 1) * 16)) & 0xFFFF) < threshold_;
  }
  // Fills mask[0..n) for blocks first .. first + n - 1.
  void fill(int64_t first, int64_t n, bool* mask) const;

  uint32_t key() const { return key_; }
  uint32_t threshold() const { return threshold_; }  // chosen when the 16-bit uniform < threshold
  // The probability actually used: round(rate * 2^16) / 2^16.
  double effective_rate() const { return threshold_ / 65536.0; }

 private:
  uint32_t key_;
  uint32_t threshold_;  // 0 .. 2^16
};

}  // namespace qnoise
