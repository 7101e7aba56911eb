#pragma once
// The [out, in] view of a Linear weight [out, in] or a 1x1 conv weight [out, in, 1, 1].
#include <cstdint>
#include <utility>

#include "qnoise/compressed_weight.h"

namespace qnoise::runtime {

// Throws qnoise::Error naming the shape for anything else.
std::pair<int64_t, int64_t> linear_out_in(const CompressedWeight& weight, const char* what);

}  // namespace qnoise::runtime
