#include "train/task_config.h"

#include "qnoise/json_input.h"

namespace qnoise::detail {

nlohmann::json merge_config(const nlohmann::json& defaults, const nlohmann::json& given,
                            const std::string& where) {
  QNOISE_CHECK(given.is_object(), where, " configuration must be a JSON object, got ", quote_json(given));
  nlohmann::json merged = defaults;
  for (const auto& [key, value] : given.items()) {
    QNOISE_CHECK(defaults.contains(key), where, " has no option '", key, "' (options: ",
                 [&] {
                   std::string names;
                   for (const auto& item : defaults.items()) names += (names.empty() ? "" : ", ") + item.key();
                   return names;
                 }(),
                 ")");
    const auto& fallback = defaults.at(key);
    if (fallback.is_object()) {
      merged[key] = merge_config(fallback, value, where + " " + key);
    } else {
      // An integer option takes only integers; a real option takes both.
      const bool numbers = fallback.is_number() && value.is_number() &&
                           !(fallback.is_number_integer() && value.is_number_float());
      QNOISE_CHECK(numbers || fallback.type() == value.type() || fallback.is_null(), where, " option '",
                   key, "' = ", quote_json(value), " should be of the same type as its default ",
                   quote_json(fallback));
      merged[key] = value;
    }
  }
  return merged;
}

nlohmann::json transformer_model_defaults() {
  return {{"d_model", 256}, {"heads", 4},          {"ffn_dim", 1024},   {"layers", 2},
          {"dropout", 0.1}, {"attention_dropout", 0.0}, {"layer_drop", 0.0}, {"share_every", 1},
          {"share_cycle", false}};
}

}  // namespace qnoise::detail
