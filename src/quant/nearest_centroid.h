#pragma once
// Nearest centroids of many vectors at once, spread over at::get_num_threads() threads: the
// k-means and PQ-encoding step over the kernels of kernels/nearest_centroid_kernels.h.
#include <cstdint>

#include "kernels/nearest_centroid_kernels.h"

namespace qnoise::kernels {

// The CPU's fastest kernel (kernel_table()) on every thread; results equal
// nearest_centroid_reference's whatever the thread count.
void nearest_centroid(const float* x, int64_t n, const CentroidPanel& panel, int32_t* index,
                      float* distance);

}  // namespace qnoise::kernels
