// fairseq's iPQ configuration turned into a qnoise plan for one model (fairseq_quantization_config.h):
// the layers each regex selects, and the block size and K fairseq's get_param would give each.
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <optional>
#include <regex>
#include <sstream>

#include "qnoise/error.h"
#include "qnoise/fairseq_quantization_config.h"

namespace qnoise {

namespace {

template <size_t D>
std::string python_tuple(const torch::ExpandingArray<D>& values) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < D; ++i) out << (i ? ", " : "") << values->at(i);
  out << (D == 1 ? ",)" : ")");
  return out.str();
}

// The type fairseq looks up (the class name): Linear, Conv2d, Embedding; for other modules the
// C++ class name without namespace and "Impl" (LayerNorm), for messages.
std::string fairseq_layer_type(torch::nn::Module& layer) {
  if (layer.as<torch::nn::Linear>()) return "Linear";
  if (layer.as<torch::nn::Conv2d>()) return "Conv2d";
  if (layer.as<torch::nn::Embedding>()) return "Embedding";
  std::string name = layer.name();
  name = name.substr(name.rfind("::") == std::string::npos ? 0 : name.rfind("::") + 2);
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  return name;
}

// The attributes fairseq's `key` may name, per type, for messages.
std::string fairseq_layer_attributes(const std::string& type) {
  if (type == "Linear") return "in_features, out_features";
  if (type == "Embedding") return "num_embeddings, embedding_dim, padding_idx";
  return "in_channels, out_channels, kernel_size, stride, padding, dilation, groups";
}

// The attribute as Python's str() writes it, since fairseq compares str(getattr(layer, key)) with
// the value keys: "512", "(3, 3)", "None". Empty when the layer has no such attribute.
std::optional<std::string> fairseq_layer_attribute(torch::nn::Module& layer, const std::string& key) {
  if (auto* linear = layer.as<torch::nn::Linear>()) {
    if (key == "in_features") return std::to_string(linear->options.in_features());
    if (key == "out_features") return std::to_string(linear->options.out_features());
  } else if (auto* embedding = layer.as<torch::nn::Embedding>()) {
    const auto& options = embedding->options;
    if (key == "num_embeddings") return std::to_string(options.num_embeddings());
    if (key == "embedding_dim") return std::to_string(options.embedding_dim());
    if (key == "padding_idx")
      return options.padding_idx().has_value() ? std::to_string(*options.padding_idx()) : std::string("None");
  } else if (auto* conv = layer.as<torch::nn::Conv2d>()) {
    const auto& options = conv->options;
    if (key == "in_channels") return std::to_string(options.in_channels());
    if (key == "out_channels") return std::to_string(options.out_channels());
    if (key == "kernel_size") return python_tuple(options.kernel_size());
    if (key == "stride") return python_tuple(options.stride());
    if (key == "dilation") return python_tuple(options.dilation());
    if (key == "groups") return std::to_string(options.groups());
    if (key == "padding") {
      if (const auto* sizes = c10::get_if<torch::ExpandingArray<2>>(&options.padding())) return python_tuple(*sizes);
      return c10::get_if<torch::enumtype::kSame>(&options.padding()) ? "same" : "valid";
    }
  }
  return std::nullopt;
}

// fairseq's get_param: the value `table` (n_centroids or block_sizes) gives the layer `name`.
int64_t fairseq_layer_value(const std::map<std::string, FairseqLayerParameter>& table, const std::string& table_name,
                            torch::nn::Module& layer, const std::string& type, const std::string& name) {
  const auto entry = table.find(type);
  if (entry == table.end()) {
    std::string types;
    for (const auto& item : table) types += (types.empty() ? "" : ", ") + item.first;
    throw Error(table_name + " has no entry for " + type + " (layer '" + name + "'); it has: " + types);
  }
  const FairseqLayerParameter& parameter = entry->second;
  const std::string where = table_name + "." + type;
  auto value_of = [&](const std::string& key) -> std::optional<int64_t> {
    for (const auto& [text, value] : parameter.values)
      if (text == key) return value;
    return std::nullopt;
  };
  std::string wanted;
  if (parameter.key == "fuzzy_name") {
    for (const auto& [part, value] : parameter.values)
      if (part != "*" && name.find(part) != std::string::npos) return value;
    wanted = "no fuzzy_name key is part of the layer name '" + name + "'";
  } else {
    const std::optional<std::string> attribute = fairseq_layer_attribute(layer, parameter.key);
    QNOISE_CHECK(attribute.has_value(), where, ": key '", parameter.key, "' is neither fuzzy_name nor an attribute of ",
                 type, " that qnoise reads (", fairseq_layer_attributes(type), ")");
    if (const auto value = value_of(*attribute)) return *value;
    wanted = "no value for " + parameter.key + "=" + *attribute + " (layer '" + name + "')";
  }
  if (const auto fallback = value_of("*")) return *fallback;
  throw Error(where + ": " + wanted + " and no \"*\" default");
}

// A regex as fairseq's YAML writes it, read as the text of a Python string literal: a backslash
// pair is one backslash (module names hold none, so a regex asking for one could never match).
std::string fairseq_regex_text(const std::string& written) {
  std::string text;
  for (size_t i = 0; i < written.size(); ++i) {
    text += written[i];
    if (written[i] == '\\' && i + 1 < written.size() && written[i + 1] == '\\') ++i;
  }
  return text;
}

// Matches a module name from its start, as fairseq's get_layers does with re.match.
std::regex fairseq_stage_regex(const std::string& written, size_t stage) {
  try {
    return std::regex("(?:module\\.)?(?:" + fairseq_regex_text(written) + ")", std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw Error("layers_to_quantize[" + std::to_string(stage) + "] '" + written +
                "' is not a regular expression qnoise reads (ECMAScript syntax, which Python's \\d, [..], "
                "(a|b), ? + * share): " + e.what());
  }
}

struct FairseqLayer {
  std::string name;
  torch::nn::Module* module;
};

// What fairseq's get_layers looks at: the modules that hold a `weight` parameter of their own.
std::vector<FairseqLayer> fairseq_weighted_layers(torch::nn::Module& model) {
  std::vector<FairseqLayer> layers;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (item.value()->named_parameters(/*recurse=*/false).contains("weight"))
      layers.push_back({item.key(), item.value().get()});
  return layers;
}

std::string fairseq_layer_list(const std::vector<FairseqLayer>& layers) {
  constexpr size_t kShown = 24;
  std::string out;
  for (size_t i = 0; i < layers.size() && i < kShown; ++i) out += (i ? ", " : "") + layers[i].name;
  if (layers.size() > kShown) out += ", ... (" + std::to_string(layers.size()) + " in all)";
  return out.empty() ? "none" : out;
}

struct FairseqStageGroup {
  int64_t block_size, n_centroids;
  std::vector<std::string> layers;
};

}  // namespace

QuantizationPlan fairseq_quantization_plan(const FairseqQuantizationConfig& config, torch::nn::Module& model,
                                           const QuantizationPlan& settings) {
  QNOISE_CHECK(!config.layers_to_quantize.empty(), "fairseq quantization config: layers_to_quantize is empty");
  const std::vector<FairseqLayer> layers = fairseq_weighted_layers(model);
  std::map<std::string, size_t> taken_by;  // layer name -> the fairseq stage that quantizes it
  QuantizationPlan plan = settings;
  plan.stages.clear();
  for (size_t s = 0; s < config.layers_to_quantize.size(); ++s) {
    const std::string& written = config.layers_to_quantize[s];
    const std::regex regex = fairseq_stage_regex(written, s);
    const std::string where = "layers_to_quantize[" + std::to_string(s) + "] '" + written + "'";
    std::vector<FairseqStageGroup> groups;
    for (const FairseqLayer& layer : layers) {
      if (!std::regex_search(layer.name, regex, std::regex_constants::match_continuous)) continue;
      const std::string type = fairseq_layer_type(*layer.module);
      QNOISE_CHECK(type == "Linear" || type == "Conv2d" || type == "Embedding", where, " matches '", layer.name,
                   "', a ", type, ": fairseq's iPQ and qnoise quantize Linear, Conv2d and Embedding layers only");
      const auto earlier = taken_by.find(layer.name);
      QNOISE_CHECK(earlier == taken_by.end(), where, " matches '", layer.name, "', which layers_to_quantize[",
                   earlier == taken_by.end() ? 0 : earlier->second, "] already quantizes");
      taken_by[layer.name] = s;
      const int64_t block_size = fairseq_layer_value(config.block_sizes, "block_sizes", *layer.module, type, layer.name);
      const int64_t n_centroids = fairseq_layer_value(config.n_centroids, "n_centroids", *layer.module, type, layer.name);
      auto group = std::find_if(groups.begin(), groups.end(), [&](const FairseqStageGroup& g) {
        return g.block_size == block_size && g.n_centroids == n_centroids;
      });
      if (group == groups.end()) group = groups.insert(groups.end(), {block_size, n_centroids, {}});
      group->layers.push_back(layer.name);
    }
    QNOISE_CHECK(!groups.empty(), where, " matches no layer (a regex matches module names from their start); the model's layers with weights: ",
                 fairseq_layer_list(layers));
    for (const FairseqStageGroup& group : groups) {
      PqStage stage;
      stage.name = "stage" + std::to_string(s + 1);
      if (groups.size() > 1)
        stage.name += "_block" + std::to_string(group.block_size) + "_k" + std::to_string(group.n_centroids);
      stage.layers = group.layers;
      stage.block_size = group.block_size;
      stage.n_centroids = group.n_centroids;
      plan.stages.push_back(stage);
    }
  }
  return parse_quantization_plan(to_json(plan));  // the checks every plan gets
}

}  // namespace qnoise
