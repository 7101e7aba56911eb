#pragma once
// One table entry per storage scheme (as ggml's type_traits): what the core layer knows about a
// scheme, in one place instead of a switch per operation. CompressedWeight's methods and the .qnz
// reader and writer call through it. The runtime keys its own tables by scheme the same way (packed
// Linear kernels in src/runtime/layer_kernels.cpp, row decoders in src/runtime/embedding_rows.cpp):
// the core layer does not see them.
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <iterator>

#include "qnoise/compressed_weight.h"

namespace qnoise {

// Every scheme in enum order, which is the order of every table keyed by scheme.
inline constexpr WeightScheme kWeightSchemes[] = {WeightScheme::Float32, WeightScheme::Float16, WeightScheme::Int8,
                                                  WeightScheme::Int4, WeightScheme::PQ};
inline constexpr size_t kWeightSchemeCount = std::size(kWeightSchemes);

// One safetensors tensor of a weight in a .qnz file, named <weight name><suffix>.
struct StoredPart {
  const char* suffix;                    // "": the weight itself (float); ".codes", ".scale", ...
  at::Tensor CompressedWeight::*tensor;  // the member that holds it
  // Its safetensors dtype for this weight. Where the part's own tensor decides (pq codes: U8 or
  // U16), a weight that lacks it yet (being read) gets the alternatives, "U8|U16".
  const char* (*dtype)(const CompressedWeight& w);
};

struct WeightSchemeTraits {
  WeightScheme scheme;
  const char* name;  // in files, plans and messages: "float32", "float16", "int8", "int4", "pq"
  // Bits of one stored value: 32 / 16 for floats, 8 / 4 for int8 / int4 codes; 0 for pq, whose bits
  // per weight follow from K, the block size and the codebook (CompressedWeight::bits_per_weight).
  int value_bits;
  // float32 / float16: the dtype `values` is kept in; at::ScalarType::Undefined for coded schemes.
  at::ScalarType values_dtype;
  // The stored tensors in file order: CompressedWeight::stored_bytes() is their sum, and
  // bits_per_weight() that in bits per weight of the float tensor.
  int n_parts;
  StoredPart parts[3];
  // A float weight in this scheme (int8 / int4: min-max per channel); nullptr for pq, which needs a
  // trained codebook (compress_pq).
  CompressedWeight (*encode)(const at::Tensor& weight);
  // Throws qnoise::Error when the parts do not fit together; the shape is checked before.
  void (*validate)(const CompressedWeight& w);
  // The float32 weight of a validated w.
  at::Tensor (*decode)(const CompressedWeight& w);
  // The weight's description in the .qnz __metadata__ 'tensors' beyond its scheme and shape, and its
  // inverse, which throws nlohmann::json's exceptions on missing or mistyped fields. nullptr for
  // both: the weight is not described, its safetensors entry says all (float).
  void (*describe)(const CompressedWeight& w, nlohmann::json& description);
  void (*parse)(const nlohmann::json& description, CompressedWeight& w);
};

// The scheme's place in kWeightSchemes and in every table keyed by scheme. Throws qnoise::Error for
// a value outside the enum.
size_t scheme_index(WeightScheme scheme);
const WeightSchemeTraits& traits(WeightScheme scheme);

}  // namespace qnoise
