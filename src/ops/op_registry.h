#pragma once
// The parts of the qnoise operator library (TORCH_LIBRARY namespace "qnoise"), each registered by
// its own file into the one library (library.cpp), custom classes first: the operators' schemas name
// them.
#include <torch/library.h>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "qnoise/block_layout.h"

namespace qnoise::ops {

void register_compressed_tensor(torch::Library& library);
void register_packed_layer(torch::Library& library);
void register_noise_ops(torch::Library& library);
void register_quantizer_ops(torch::Library& library);
void register_file_ops(torch::Library& library);

// How the operators cut a weight into blocks, from its rank: 2-D Linear / Embedding, 3-D Conv1d,
// 4-D Conv2d (the blocks are the same runs of each row for all of them). Throws qnoise::Error for
// other ranks or a block size that does not divide a row.
BlockLayout layout_of_weight(const at::Tensor& weight, int64_t block_size);
BlockLayout layout_of_shape(const std::vector<int64_t>& shape, int64_t block_size);

// The layer kinds as Python names them: core's names in lower case ("linear", "embedding", "conv1d",
// "conv2d"), and the inverse, which throws qnoise::Error naming the accepted names.
std::string layer_kind_name(LayerKind kind);
LayerKind parse_layer_kind_name(const std::string& name);

// JSON text given to an operator; qnoise::Error naming `what` when it does not parse.
nlohmann::json parse_json_text(const std::string& text, const std::string& what);

}  // namespace qnoise::ops
