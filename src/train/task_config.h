#pragma once
// Reading task configurations (JSON objects of defaults overridden by the user's values): unknown
// keys and wrong types are errors that name the key, since a typo would otherwise silently train
// the default model.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/json_input.h"

namespace qnoise::detail {

// `defaults` with every key of `given` replacing the default; nested objects merge the same way.
// `where` names the object in errors ("image task", "image task model").
nlohmann::json merge_config(const nlohmann::json& defaults, const nlohmann::json& given,
                            const std::string& where);

// The Transformer options the language-model and sentence-pair tasks share (their "model"
// object, before task-specific keys).
nlohmann::json transformer_model_defaults();

// config[key] as T; throws qnoise::Error naming the key and the type it needs.
template <typename T>
T config_value(const nlohmann::json& config, const std::string& key) {
  QNOISE_CHECK(config.contains(key), "configuration has no '", key, "'");
  // Integers only where integers belong: nlohmann casts a float to an integer type, which is
  // undefined beyond the type's range ("cutoffs": [1e300]).
  if constexpr ((std::is_integral_v<T> && !std::is_same_v<T, bool>) || std::is_same_v<T, std::vector<int64_t>>) {
    const nlohmann::json& value = config.at(key);
    QNOISE_CHECK(std::none_of(value.begin(), value.end(), [](const nlohmann::json& v) { return v.is_number_float(); }),
                 "configuration value '", key, "' = ", quote_json(value), " is not made of integers");
  }
  try {
    return config.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error("configuration value '" + key + "' = " + config.at(key).dump() +
                " has the wrong type");
  }
}

}  // namespace qnoise::detail
