// Reading fairseq's iPQ configuration YAML (fairseq_quantization_config.h) with yaml-cpp, checked
// key by key so that every mistake is an error naming the key, not a crash later.
#include "qnoise/fairseq_quantization_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "qnoise/error.h"

namespace qnoise {

namespace {

const char* const kFairseqKeys = "n_centroids, block_sizes, layers_to_quantize";

// Where a node is in the file, for messages: "line 3".
std::string fairseq_yaml_line(const YAML::Node& node) { return "line " + std::to_string(node.Mark().line + 1); }

int64_t fairseq_yaml_integer(const YAML::Node& node, const std::string& where) {
  QNOISE_CHECK(node.IsScalar(), where, " must be an integer (", fairseq_yaml_line(node), ")");
  const std::string& text = node.Scalar();
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  QNOISE_CHECK(used == text.size() && !text.empty() && value >= 1, where, ": '", text,
               "' is not a positive integer (", fairseq_yaml_line(node), ")");
  return value;
}

// One table (n_centroids or block_sizes): layer type -> {key: ..., value: {...}}.
std::map<std::string, FairseqLayerParameter> fairseq_yaml_parameters(const YAML::Node& table, const std::string& name) {
  QNOISE_CHECK(table.IsMap(), name, " must map layer types (Linear, Embedding, Conv2d) to {key, value} (",
               fairseq_yaml_line(table), ")");
  std::map<std::string, FairseqLayerParameter> out;
  for (const auto& item : table) {
    const std::string type = item.first.as<std::string>();
    const std::string where = name + "." + type;
    const YAML::Node& entry = item.second;
    QNOISE_CHECK(entry.IsMap(), where, " must be {key: <attribute or fuzzy_name>, value: {...}} (",
                 fairseq_yaml_line(entry), ")");
    for (const auto& field : entry) {
      const std::string field_name = field.first.as<std::string>();
      QNOISE_CHECK(field_name == "key" || field_name == "value", where, " has no field '", field_name,
                   "' (it has key and value)");
    }
    QNOISE_CHECK(entry["key"] && entry["key"].IsScalar(), where, " needs a 'key': a layer attribute or fuzzy_name");
    QNOISE_CHECK(entry["value"] && entry["value"].IsMap() && entry["value"].size() > 0, where,
                 " needs a 'value': a non-empty map such as {\"*\": 256}");
    FairseqLayerParameter parameter;
    parameter.key = entry["key"].Scalar();
    for (const auto& value : entry["value"]) {
      QNOISE_CHECK(value.first.IsScalar(), where, ".value: keys must be text or numbers (", fairseq_yaml_line(value.first),
                   ")");
      const std::string key = value.first.Scalar();
      const int64_t number = fairseq_yaml_integer(value.second, where + ".value." + key);
      if (name == "n_centroids")
        QNOISE_CHECK(number >= 2 && number <= 65536, where, ".value.", key, ": n_centroids must be in [2, 65536], got ",
                     number);
      parameter.values.emplace_back(key, number);
    }
    out[type] = parameter;
  }
  return out;
}

std::vector<std::string> fairseq_yaml_regexes(const YAML::Node& list) {
  QNOISE_CHECK(list.IsSequence() && list.size() > 0, "layers_to_quantize must be a non-empty list of regexes (",
               fairseq_yaml_line(list), ")");
  std::vector<std::string> out;
  for (size_t i = 0; i < list.size(); ++i) {
    QNOISE_CHECK(list[i].IsScalar() && !list[i].Scalar().empty(), "layers_to_quantize[", i,
                 "] must be a regex over layer names (", fairseq_yaml_line(list[i]), ")");
    out.push_back(list[i].Scalar());
  }
  return out;
}

}  // namespace

FairseqQuantizationConfig default_fairseq_quantization_config() {
  FairseqQuantizationConfig config;
  config.n_centroids = {{"Linear", FairseqLayerParameter{"in_features", {{"*", 256}}}},
                        {"Embedding", FairseqLayerParameter{"embedding_dim", {{"*", 256}}}}};
  config.block_sizes = {{"Linear", FairseqLayerParameter{"fuzzy_name", {{"fc", 8}, {"attn", 4}, {"emb", 4}}}},
                        {"Embedding", FairseqLayerParameter{"fuzzy_name", {{"emb", 8}}}}};
  config.layers_to_quantize = {R"(decoder\.layers\.\d+\.fc[12])",
                               R"(decoder\.embed_tokens\.embeddings\.[012]\.[01])",
                               R"(decoder\.layers\.\d+\.self_attn\.(k_proj|v_proj|q_proj|out_proj))"};
  return config;
}

FairseqQuantizationConfig parse_fairseq_quantization_config(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw Error(source + " is not valid YAML: " + e.what());
  }
  QNOISE_CHECK(root.IsMap(), source, " must be a YAML map with the keys ", kFairseqKeys,
               root.IsNull() ? " (it is empty)" : "");
  FairseqQuantizationConfig config = default_fairseq_quantization_config();
  try {
    for (const auto& item : root) {
      const std::string key = item.first.as<std::string>();
      if (key == "n_centroids") {
        config.n_centroids = fairseq_yaml_parameters(item.second, key);
      } else if (key == "block_sizes") {
        config.block_sizes = fairseq_yaml_parameters(item.second, key);
      } else if (key == "layers_to_quantize") {
        config.layers_to_quantize = fairseq_yaml_regexes(item.second);
      } else {
        throw Error("unknown key '" + key + "' (" + fairseq_yaml_line(item.first) + "; fairseq's keys are " +
                    kFairseqKeys + (key == "stages" ? "; a qnoise plan with stages is a .json file" : "") + ")");
      }
    }
  } catch (const YAML::Exception& e) {  // e.g. a map where a name was expected
    throw Error(source + ": " + e.what());
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  return config;
}

FairseqQuantizationConfig read_fairseq_quantization_config(const std::string& path) {
  std::ifstream in(path);
  QNOISE_CHECK(in.good(), "cannot read the fairseq quantization config '", path, "'");
  std::stringstream text;
  text << in.rdbuf();
  return parse_fairseq_quantization_config(text.str(), "'" + path + "'");
}

bool is_fairseq_quantization_config_path(const std::string& path) {
  const std::string extension = std::filesystem::path(path).extension().string();
  return extension == ".yaml" || extension == ".yml";
}

}  // namespace qnoise
