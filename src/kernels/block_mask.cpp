#include "kernels/block_mask.h"

#include <cmath>

namespace qnoise {

BlockMaskSampler::BlockMaskSampler(double rate, uint64_t seed)
    : key_(static_cast<uint32_t>(seed ^ (seed >> 32))),
      threshold_(static_cast<uint32_t>(std::llround(rate * 65536.0))) {}

void BlockMaskSampler::fill(int64_t first, int64_t n, bool* mask) const {
  for (int64_t i = 0; i < n; ++i) mask[i] = chosen(first + i);
}

}  // namespace qnoise
