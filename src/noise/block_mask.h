#pragma once
// Bernoulli(rate) choice of blocks as a pure function of (seed, block index): a counter-based
// generator (the splitmix64 finaliser) gives four 16-bit uniforms per 64-bit hash. Any thread can
// draw any range of blocks, and the fused kernels and the reference path draw the same mask.
#include <cstdint>

namespace qnoise {

class BlockMaskSampler {
 public:
  BlockMaskSampler(double rate, uint64_t seed);

  // The 64 random bits shared by blocks 4g .. 4g+3.
  uint64_t group_bits(int64_t group) const {
    uint64_t z = seed_ + static_cast<uint64_t>(group) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  bool chosen_in_group(uint64_t bits, int64_t block) const {
    return ((bits >> ((block & 3) * 16)) & 0xFFFF) < threshold_;
  }
  bool chosen(int64_t block) const { return chosen_in_group(group_bits(block >> 2), block); }

  // Fills mask[0..n) for blocks first .. first + n - 1.
  void fill(int64_t first, int64_t n, bool* mask) const;

  // The probability actually used: round(rate * 2^16) / 2^16.
  double effective_rate() const { return threshold_ / 65536.0; }

 private:
  uint64_t seed_;
  uint32_t threshold_;  // 0 .. 65536
};

}  // namespace qnoise
