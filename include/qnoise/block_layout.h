#pragma once
// How a layer's weight is cut into the blocks that quantizers and Quant-Noise work on.
//
// Every supported layer stores its weight with the output dimension first, so a weight is a set of
// rows (Linear out_features x in_features, Embedding num_embeddings x dim, Conv2d out_channels x
// (in_channels/groups * kh * kw)). A block is `block_size` consecutive values of one row:
//  * Linear: block_size consecutive input weights of one output row;
//  * Embedding: block_size consecutive values along the embedding dimension;
//  * Conv2d 1x1: a group of block_size input channels; k x k: block_size = k*k is one whole kernel
//    of an (out, in) pair, and any block_size dividing in*k*k groups consecutive kernel values;
//  * Conv1d ([out, in/groups, k]): the same with kernels of k values.
// Blocks are therefore contiguous in memory and numbered row-major: block (r, j) is number
// r * blocks_per_row + j.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qnoise {

enum class LayerKind { Linear, Embedding, Conv2d, Conv1d };

std::string to_string(LayerKind kind);

class BlockLayout {
 public:
  // Throws qnoise::Error naming the layer shape when the shape is wrong for the kind or
  // block_size does not divide the row length.
  BlockLayout(LayerKind kind, std::vector<int64_t> weight_shape, int64_t block_size);

  static BlockLayout linear(std::vector<int64_t> shape, int64_t block_size) {
    return BlockLayout(LayerKind::Linear, std::move(shape), block_size);
  }
  static BlockLayout embedding(std::vector<int64_t> shape, int64_t block_size) {
    return BlockLayout(LayerKind::Embedding, std::move(shape), block_size);
  }
  static BlockLayout conv2d(std::vector<int64_t> shape, int64_t block_size) {
    return BlockLayout(LayerKind::Conv2d, std::move(shape), block_size);
  }

  LayerKind kind() const { return kind_; }
  const std::vector<int64_t>& weight_shape() const { return weight_shape_; }
  int64_t block_size() const { return block_size_; }
  int64_t n_rows() const { return weight_shape_[0]; }
  int64_t row_length() const { return row_length_; }
  int64_t blocks_per_row() const { return row_length_ / block_size_; }
  int64_t n_blocks() const { return n_rows() * blocks_per_row(); }
  int64_t numel() const { return n_rows() * row_length_; }

  // The weight as an [n_blocks, block_size] matrix (a view when the weight is contiguous).
  at::Tensor to_blocks(const at::Tensor& weight) const;
  // Inverse of to_blocks: an [n_blocks, block_size] matrix back in the weight's shape.
  at::Tensor from_blocks(const at::Tensor& blocks) const;
  // Repeats a per-block value ([n_blocks] or [n_rows, blocks_per_row]) over the block's weights,
  // giving a tensor of the weight's shape.
  at::Tensor expand_per_block(const at::Tensor& per_block) const;

  // "Conv2d weight [64, 32, 3, 3] in blocks of 9".
  std::string describe() const;

 private:
  void check_weight(const at::Tensor& weight) const;

  LayerKind kind_;
  std::vector<int64_t> weight_shape_;
  int64_t block_size_;
  int64_t row_length_;
};

std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace qnoise
