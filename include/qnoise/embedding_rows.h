#pragma once
// Embedding lookups straight from a compressed table: only the rows asked for are decoded, so a
// lookup costs O(n * dim) whatever the vocabulary size, and the float table never exists.
#include <ATen/core/Tensor.h>

#include "qnoise/compressed_weight.h"

namespace qnoise {

// weight: a 2-D table [rows, dim] stored as float32, float16, int8, int4 (per-row scale and zero
// point) or pq (blocks along dim); indices: integer tensor of any shape with values in [0, rows).
// Returns float32 [n, dim], n = indices.numel(), rows in the order of indices.flatten().
// Throws qnoise::Error for an index out of range, a non-2-D table or parts that do not fit
// (only the selected pq codes are checked against K).
at::Tensor decode_rows(const CompressedWeight& weight, const at::Tensor& indices);

}  // namespace qnoise
