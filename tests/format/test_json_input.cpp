// JSON from files: nesting and duplicate keys refused before anything prints the value.
#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/json_input.h"

namespace {

std::string error_of(const std::string& text) {
  try {
    qnoise::parse_json_input(text, "'x.json'");
  } catch (const qnoise::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(JsonInput, ReadsWhatQnoiseWrites) {
  const auto value = qnoise::parse_json_input(R"({"a": [1, {"b": 2.5}], "c": "d", "e": {"a": 1}})", "x");
  EXPECT_EQ(value["a"][1]["b"], 2.5);
  EXPECT_EQ(value["e"]["a"], 1);  // the same key in two objects is fine
  std::istringstream in(R"([[[[1]]]])");
  EXPECT_EQ(qnoise::parse_json_input(in, "x")[0][0][0][0], 1);
}

TEST(JsonInput, DeepNestingIsRefusedAtTheLimit) {
  auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_NO_THROW(qnoise::parse_json_input(nested(qnoise::kMaxJsonDepth), "x"));
  EXPECT_EQ(error_of(nested(qnoise::kMaxJsonDepth + 1)), "'x.json' nests deeper than 64 levels");
  // The size that used to overflow the stack in dump(): refused, quickly.
  EXPECT_EQ(error_of(std::string(75000, '[') + std::string(75000, ']')), "'x.json' nests deeper than 64 levels");
  std::string objects;
  for (int i = 0; i < 75000; ++i) objects += "{\"a\":";
  EXPECT_EQ(error_of(objects), "'x.json' nests deeper than 64 levels");
}

TEST(JsonInput, DuplicateKeysAndBadJsonAreNamed) {
  EXPECT_EQ(error_of(R"({"__metadata__": {}, "w": 1, "__metadata__": {"x": 1}})"),
            "'x.json' has the key \"__metadata__\" twice in one object");
  EXPECT_EQ(error_of(R"({"a": {"b": 1, "b": 2}})"), "'x.json' has the key \"b\" twice in one object");
  EXPECT_NE(error_of(R"({"a": )").find("'x.json' is not valid JSON"), std::string::npos);
}

TEST(JsonInput, QuotesAreCut) {
  EXPECT_EQ(qnoise::quote_json(nlohmann::json("abc")), "\"abc\"");
  const std::string quoted = qnoise::quote_json(nlohmann::json(std::string(1000, 'x')), 20);
  EXPECT_EQ(quoted, "\"" + std::string(19, 'x') + "...");
}

TEST(JsonInput, IntegersMustBeJsonIntegersWithinInt64) {
  EXPECT_EQ(qnoise::json_integer(nlohmann::json::parse("-7"), "x"), -7);
  EXPECT_EQ(qnoise::json_integer(nlohmann::json::parse("9223372036854775807"), "x"), INT64_MAX);
  EXPECT_EQ(qnoise::json_integers(nlohmann::json::parse("[1, 2, 3]"), "x"), (std::vector<int64_t>{1, 2, 3}));
  for (const char* bad : {"1.0", "8e300", "9223372036854775808", "\"3\"", "true", "null"})
    EXPECT_THROW(qnoise::json_integer(nlohmann::json::parse(bad), "groups"), qnoise::Error) << bad;
  for (const char* bad : {"[1, 2.5]", "3", "[[1]]"})
    EXPECT_THROW(qnoise::json_integers(nlohmann::json::parse(bad), "stride"), qnoise::Error) << bad;
  try {
    qnoise::json_integer(nlohmann::json::parse("1e300"), "block_size");
    FAIL();
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("block_size must be an integer, got 1e+300"), std::string::npos) << e.what();
  }
}
