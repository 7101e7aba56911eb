// How the operators name layer kinds, cut weights into blocks and read JSON text (op_registry.h).
#include <cctype>
#include <nlohmann/json.hpp>

#include "ops/op_registry.h"
#include "qnoise/error.h"
#include "qnoise/json_input.h"

namespace qnoise::ops {

namespace {

constexpr LayerKind kKinds[] = {LayerKind::Linear, LayerKind::Embedding, LayerKind::Conv1d, LayerKind::Conv2d};

}  // namespace

std::string layer_kind_name(LayerKind kind) {
  std::string name = to_string(kind);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

LayerKind parse_layer_kind_name(const std::string& name) {
  for (LayerKind kind : kKinds)
    if (layer_kind_name(kind) == name) return kind;
  throw Error("unknown layer kind '" + name + "' (expected linear, embedding, conv1d or conv2d)");
}

BlockLayout layout_of_weight(const at::Tensor& weight, int64_t block_size) {
  return layout_of_shape(weight.sizes().vec(), block_size);
}

BlockLayout layout_of_shape(const std::vector<int64_t>& shape, int64_t block_size) {
  switch (shape.size()) {
    case 2: return BlockLayout::linear(shape, block_size);
    case 3: return BlockLayout(LayerKind::Conv1d, shape, block_size);
    case 4: return BlockLayout::conv2d(shape, block_size);
    default:
      throw Error("qnoise quantizes 2-D (Linear, Embedding), 3-D (Conv1d) and 4-D (Conv2d) weights, got shape " +
                  shape_to_string(shape));
  }
}

nlohmann::json parse_json_text(const std::string& text, const std::string& what) {
  return parse_json_input(text, what);
}

}  // namespace qnoise::ops
