#pragma once
// JSON from outside the program (files, a .qnz's metadata, checkpoints, configurations) read with
// limits, and JSON values quoted in messages with a length cap. nlohmann's parser is iterative but
// dump() and comparisons recurse, so a 150 KB file nested 75,000 levels deep used to crash
// whatever printed it; a second "__metadata__" (any key twice) used to replace the first silently.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace qnoise {

// Deeper than any configuration, plan or file header qnoise writes (they nest at most 6 levels).
inline constexpr int kMaxJsonDepth = 64;

// Parses `text`; throws qnoise::Error naming `what` for invalid JSON, nesting deeper than
// kMaxJsonDepth, or an object with a key twice (naming the key).
nlohmann::json parse_json_input(const std::string& text, const std::string& what);
nlohmann::json parse_json_input(std::istream& in, const std::string& what);

// An integer value (or list of them) read without nlohmann's float-to-integer casts, undefined
// beyond the type's range: anything but JSON integers within int64 is a qnoise::Error naming `what`.
int64_t json_integer(const nlohmann::json& value, const std::string& what);
std::vector<int64_t> json_integers(const nlohmann::json& value, const std::string& what);

// `value` as JSON text for a message: cut to `limit` characters (with "..." when cut).
std::string quote_json(const nlohmann::json& value, std::size_t limit = 120);

}  // namespace qnoise
