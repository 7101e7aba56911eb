#include "qnoise/json_input.h"

#include <functional>
#include <limits>
#include <set>
#include <vector>

#include "qnoise/error.h"

namespace qnoise {

namespace {

// Checks depth and duplicate keys as the parser goes, before anything deeper is built.
class InputChecks {
 public:
  explicit InputChecks(const std::string& what) : what_(what) {}

  bool operator()(int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        QNOISE_CHECK(depth < kMaxJsonDepth, what_, " nests deeper than ", kMaxJsonDepth, " levels");
        keys_.emplace_back();
        break;
      case Event::object_end:
      case Event::array_end:
        keys_.pop_back();
        break;
      case Event::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        QNOISE_CHECK(keys_.back().insert(key).second, what_, " has the key ", quote_json(parsed), " twice in one object");
        break;
      }
      case Event::value:
        break;
    }
    return true;
  }

 private:
  std::string what_;
  std::vector<std::set<std::string>> keys_;  // per open object or array (arrays' stay empty)
};

template <typename Input>
nlohmann::json parse_checked(Input&& input, const std::string& what) {
  InputChecks checks(what);
  try {
    return nlohmann::json::parse(std::forward<Input>(input), std::ref(checks));
  } catch (const nlohmann::json::exception& e) {
    throw Error(what + " is not valid JSON: " + e.what());
  }
}

}  // namespace

nlohmann::json parse_json_input(const std::string& text, const std::string& what) { return parse_checked(text, what); }

nlohmann::json parse_json_input(std::istream& in, const std::string& what) { return parse_checked(in, what); }

int64_t json_integer(const nlohmann::json& value, const std::string& what) {
  const bool fits = value.is_number_integer() &&
                    (!value.is_number_unsigned() ||
                     value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  QNOISE_CHECK(fits, what, " must be an integer, got ", quote_json(value));
  return value.get<int64_t>();
}

std::vector<int64_t> json_integers(const nlohmann::json& value, const std::string& what) {
  QNOISE_CHECK(value.is_array(), what, " must be a list of integers, got ", quote_json(value));
  std::vector<int64_t> values;
  for (const auto& item : value) values.push_back(json_integer(item, what));
  return values;
}

std::string quote_json(const nlohmann::json& value, std::size_t limit) {
  std::string text = value.dump();
  if (text.size() > limit) text = text.substr(0, limit) + "...";
  return text;
}

}  // namespace qnoise
