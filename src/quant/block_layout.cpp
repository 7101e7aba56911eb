#include "qnoise/block_layout.h"

#include <ATen/ATen.h>

#include "qnoise/error.h"

namespace qnoise {

std::string to_string(LayerKind kind) {
  switch (kind) {
    case LayerKind::Linear: return "Linear";
    case LayerKind::Embedding: return "Embedding";
    case LayerKind::Conv2d: return "Conv2d";
    case LayerKind::Conv1d: return "Conv1d";
  }
  return "unknown";
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

namespace {

size_t expected_rank(LayerKind kind) {
  switch (kind) {
    case LayerKind::Conv2d: return 4;
    case LayerKind::Conv1d: return 3;
    default: return 2;
  }
}

// Names the dimensions a block must divide, so the error tells the user what to change.
std::string row_description(LayerKind kind, const std::vector<int64_t>& shape) {
  switch (kind) {
    case LayerKind::Linear: return "in_features " + std::to_string(shape[1]);
    case LayerKind::Embedding: return "embedding_dim " + std::to_string(shape[1]);
    case LayerKind::Conv2d: {
      const int64_t kernel = shape[2] * shape[3];
      std::string text = "in_channels*kh*kw = " + std::to_string(shape[1] * kernel);
      if (kernel > 1) text += " (" + std::to_string(kernel) + " is one whole kernel)";
      return text;
    }
    case LayerKind::Conv1d: {
      std::string text = "in_channels*k = " + std::to_string(shape[1] * shape[2]);
      if (shape[2] > 1) text += " (" + std::to_string(shape[2]) + " is one whole kernel)";
      return text;
    }
  }
  return "";
}

}  // namespace

BlockLayout::BlockLayout(LayerKind kind, std::vector<int64_t> weight_shape, int64_t block_size)
    : kind_(kind), weight_shape_(std::move(weight_shape)), block_size_(block_size), row_length_(0) {
  QNOISE_CHECK(weight_shape_.size() == expected_rank(kind), to_string(kind), " weight must have ",
               expected_rank(kind), " dimensions, got shape ", shape_to_string(weight_shape_));
  for (int64_t dim : weight_shape_)
    QNOISE_CHECK(dim > 0, to_string(kind), " weight has an empty dimension: shape ",
                 shape_to_string(weight_shape_));
  row_length_ = 1;
  for (size_t i = 1; i < weight_shape_.size(); ++i) row_length_ *= weight_shape_[i];
  QNOISE_CHECK(block_size > 0, "block_size must be positive, got ", block_size, " for ",
               to_string(kind), " weight ", shape_to_string(weight_shape_));
  QNOISE_CHECK(row_length_ % block_size == 0, "block_size ", block_size, " does not divide ",
               row_description(kind, weight_shape_), " of ", to_string(kind), " weight ",
               shape_to_string(weight_shape_));
}

std::string BlockLayout::describe() const {
  return to_string(kind_) + " weight " + shape_to_string(weight_shape_) + " in blocks of " +
         std::to_string(block_size_);
}

void BlockLayout::check_weight(const at::Tensor& weight) const {
  QNOISE_CHECK(weight.defined() && weight.sizes().vec() == weight_shape_, "expected a ", describe(),
               ", got shape ",
               weight.defined() ? shape_to_string(weight.sizes().vec()) : std::string("(none)"));
}

at::Tensor BlockLayout::to_blocks(const at::Tensor& weight) const {
  check_weight(weight);
  return weight.reshape({n_blocks(), block_size_});
}

at::Tensor BlockLayout::from_blocks(const at::Tensor& blocks) const {
  QNOISE_CHECK(blocks.dim() == 2 && blocks.size(0) == n_blocks() && blocks.size(1) == block_size_,
               "expected ", n_blocks(), " blocks of ", block_size_, " for ", describe(), ", got shape ",
               shape_to_string(blocks.sizes().vec()));
  return blocks.reshape(weight_shape_);
}

at::Tensor BlockLayout::expand_per_block(const at::Tensor& per_block) const {
  QNOISE_CHECK(per_block.numel() == n_blocks(), "expected one value per block (", n_blocks(),
               ") for ", describe(), ", got ", per_block.numel());
  return per_block.reshape({n_blocks(), 1}).expand({n_blocks(), block_size_}).reshape(weight_shape_);
}

}  // namespace qnoise
