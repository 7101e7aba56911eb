#include "qnoise/quantization_plan.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <type_traits>

#include "qnoise/compressed_weight.h"
#include "qnoise/error.h"
#include "qnoise/json_input.h"

namespace qnoise {

namespace {

template <typename T>
T read_key(const nlohmann::json& object, const std::string& key, const T& fallback, const std::string& where) {
  if (!object.contains(key)) return fallback;
  // nlohmann casts a float to an integer type, which is undefined beyond the type's range (1e300).
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    QNOISE_CHECK(object.at(key).is_number_integer(), where, ": '", key, "' must be an integer, got ",
                 quote_json(object.at(key)));
  try {
    return object.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(where + ": '" + key + "' has the wrong type (" + quote_json(object.at(key)) + ")");
  }
}

void check_keys(const nlohmann::json& object, const std::set<std::string>& known, const std::string& where) {
  QNOISE_CHECK(object.is_object(), where, " must be a JSON object");
  for (const auto& item : object.items())
    QNOISE_CHECK(known.count(item.key()) != 0, where, " has no option '", item.key(), "'");
}

PqStage parse_stage(const nlohmann::json& json, size_t index) {
  const std::string where = "quantization plan stage " + std::to_string(index + 1);
  check_keys(json, {"name", "layers", "scheme", "ranges", "block_size", "n_centroids", "centroid_bits"}, where);
  PqStage stage;
  stage.name = read_key<std::string>(json, "name", "stage" + std::to_string(index + 1), where);
  if (json.contains("layers") && json.at("layers").is_string()) {
    stage.layers = {json.at("layers").get<std::string>()};
  } else {
    stage.layers = read_key<std::vector<std::string>>(json, "layers", {}, where);
  }
  QNOISE_CHECK(!stage.layers.empty(), where, " ('", stage.name, "') names no layers");
  const auto scheme = read_key<std::string>(json, "scheme", "pq", where);
  if (scheme == "int8" || scheme == "int4") {
    stage.scheme = scheme == "int8" ? StageScheme::Int8 : StageScheme::Int4;
  } else {
    QNOISE_CHECK(scheme == "pq", where, ": unknown scheme '", scheme, "' (pq, int8 or int4)");
  }
  const auto ranges = read_key<std::string>(json, "ranges", "channel", where);
  QNOISE_CHECK(ranges == "channel" || ranges == "tensor", where, ": ranges must be channel or tensor, got '", ranges,
               "'");
  QNOISE_CHECK(ranges == "channel" || stage.scheme != StageScheme::Pq, where,
               ": ranges apply to int8 / int4 stages, not pq");
  stage.per_tensor = ranges == "tensor";
  stage.block_size = read_key<int64_t>(json, "block_size", stage.block_size, where);
  stage.n_centroids = read_key<int64_t>(json, "n_centroids", stage.n_centroids, where);
  stage.centroid_bits = read_key<int>(json, "centroid_bits", stage.centroid_bits, where);
  try {
    check_centroid_bits(stage.centroid_bits);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  QNOISE_CHECK(stage.block_size >= 1, where, ": block_size must be >= 1, got ", stage.block_size);
  QNOISE_CHECK(stage.n_centroids >= 2 && stage.n_centroids <= 65536, where,
               ": n_centroids must be in [2, 65536], got ", stage.n_centroids);
  return stage;
}

}  // namespace

int64_t QuantizationPlan::centroids_for(const PqStage& stage, int64_t n_blocks) const {
  const int64_t by_size = std::max<int64_t>(2, n_blocks / std::max<int64_t>(1, blocks_per_centroid));
  return std::min({stage.n_centroids, by_size, n_blocks});
}

QuantizationPlan parse_quantization_plan(const nlohmann::json& json) {
  const std::string where = "quantization plan";
  check_keys(json, {"stages", "finetune_steps", "lr", "noise_rate", "kmeans_iterations", "blocks_per_centroid",
                    "rest", "seed"},
             where);
  QuantizationPlan plan;
  QNOISE_CHECK(json.contains("stages") && json.at("stages").is_array() && !json.at("stages").empty(), where,
               " needs a non-empty list of 'stages'");
  for (size_t i = 0; i < json.at("stages").size(); ++i) plan.stages.push_back(parse_stage(json.at("stages")[i], i));
  plan.finetune_steps = read_key<int64_t>(json, "finetune_steps", plan.finetune_steps, where);
  plan.lr = read_key<double>(json, "lr", plan.lr, where);
  plan.noise_rate = read_key<double>(json, "noise_rate", plan.noise_rate, where);
  plan.kmeans_iterations = read_key<int>(json, "kmeans_iterations", plan.kmeans_iterations, where);
  plan.blocks_per_centroid = read_key<int64_t>(json, "blocks_per_centroid", plan.blocks_per_centroid, where);
  plan.rest = read_key<std::string>(json, "rest", plan.rest, where);
  plan.seed = read_key<uint64_t>(json, "seed", plan.seed, where);
  QNOISE_CHECK(plan.finetune_steps >= 0, where, ": finetune_steps must be >= 0");
  QNOISE_CHECK(plan.lr > 0, where, ": lr must be positive");
  QNOISE_CHECK(plan.noise_rate >= 0 && plan.noise_rate < 1, where, ": noise_rate must be in [0, 1)");
  QNOISE_CHECK(plan.kmeans_iterations >= 1, where, ": kmeans_iterations must be >= 1");
  QNOISE_CHECK(plan.blocks_per_centroid >= 1, where, ": blocks_per_centroid must be >= 1");
  QNOISE_CHECK(plan.rest == "float16" || plan.rest == "float32", where, ": rest must be float16 or float32, got '",
               plan.rest, "'");
  return plan;
}

std::string to_string(StageScheme scheme) {
  switch (scheme) {
    case StageScheme::Pq: return "pq";
    case StageScheme::Int8: return "int8";
    case StageScheme::Int4: return "int4";
  }
  return "?";
}

nlohmann::json to_json(const QuantizationPlan& plan) {
  nlohmann::json stages = nlohmann::json::array();
  for (const PqStage& stage : plan.stages) {
    if (stage.scheme != StageScheme::Pq) {
      stages.push_back({{"name", stage.name}, {"layers", stage.layers}, {"scheme", to_string(stage.scheme)}});
      if (stage.per_tensor) stages.back()["ranges"] = "tensor";
      continue;
    }
    // PQ stages without a "scheme" key, as plans were written before stages had one.
    stages.push_back({{"name", stage.name},
                      {"layers", stage.layers},
                      {"block_size", stage.block_size},
                      {"n_centroids", stage.n_centroids},
                      {"centroid_bits", stage.centroid_bits}});
  }
  return {{"stages", stages},
          {"finetune_steps", plan.finetune_steps},
          {"lr", plan.lr},
          {"noise_rate", plan.noise_rate},
          {"kmeans_iterations", plan.kmeans_iterations},
          {"blocks_per_centroid", plan.blocks_per_centroid},
          {"rest", plan.rest},
          {"seed", plan.seed}};
}

QuantizationPlan read_quantization_plan(const std::string& path) {
  std::ifstream in(path);
  QNOISE_CHECK(in.good(), "cannot read the quantization plan '", path, "'");
  const nlohmann::json json = parse_json_input(in, "quantization plan '" + path + "'");
  try {
    return parse_quantization_plan(json);
  } catch (const Error& e) {
    throw Error("'" + path + "': " + e.what());
  }
}

}  // namespace qnoise
