#include "qnoise/vocabulary.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "qnoise/atomic_file.h"
#include "qnoise/error.h"

namespace qnoise {

const char* const Vocabulary::kPad = "<pad>";
const char* const Vocabulary::kEndOfSentence = "</s>";
const char* const Vocabulary::kUnknown = "<unk>";

namespace {

bool is_special(const std::string& token) {
  return token == Vocabulary::kPad || token == Vocabulary::kEndOfSentence ||
         token == Vocabulary::kUnknown;
}

// Whole-string parse of a non-negative decimal count; false on anything else.
bool parse_count(const std::string& text, int64_t& value) {
  if (text.empty() || text.size() > 18) return false;
  value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  return true;
}

}  // namespace

Vocabulary::Vocabulary() {
  add(kPad, 0);
  add(kEndOfSentence, 0);
  add(kUnknown, 0);
}

void Vocabulary::add(const std::string& token, int64_t count) {
  ids_.emplace(token, size());
  tokens_.push_back(token);
  counts_.push_back(count);
}

Vocabulary Vocabulary::build(const std::vector<std::string>& tokens, const VocabularyOptions& options) {
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& token : tokens) ++counts[token];
  return from_counts(counts, options);
}

Vocabulary Vocabulary::from_counts(const std::unordered_map<std::string, int64_t>& counts,
                                   const VocabularyOptions& options) {
  QNOISE_CHECK(options.min_count >= 1, "vocabulary min_count must be at least 1, got ", options.min_count);
  QNOISE_CHECK(options.max_size == 0 || options.max_size >= kSpecialCount,
               "vocabulary max_size must be 0 (no limit) or at least ", kSpecialCount,
               " (the special tokens), got ", options.max_size);
  Vocabulary vocabulary;
  std::vector<std::pair<std::string, int64_t>> regular;
  for (const auto& [token, count] : counts) {
    if (is_special(token)) {
      vocabulary.counts_[vocabulary.ids_.at(token)] += count;
    } else if (count >= options.min_count) {
      regular.emplace_back(token, count);
    }
  }
  std::sort(regular.begin(), regular.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (options.max_size > 0 && static_cast<int64_t>(regular.size()) > options.max_size - kSpecialCount)
    regular.resize(options.max_size - kSpecialCount);
  for (const auto& [token, count] : regular) vocabulary.add(token, count);
  return vocabulary;
}

int64_t Vocabulary::id(const std::string& token) const {
  auto found = ids_.find(token);
  return found == ids_.end() ? kUnknownId : found->second;
}

const std::string& Vocabulary::token(int64_t id) const {
  QNOISE_CHECK(id >= 0 && id < size(), "token id ", id, " is outside the vocabulary of ", size());
  return tokens_[id];
}

int64_t Vocabulary::count(int64_t id) const {
  QNOISE_CHECK(id >= 0 && id < size(), "token id ", id, " is outside the vocabulary of ", size());
  return counts_[id];
}

std::vector<int64_t> Vocabulary::encode(const std::vector<std::string>& tokens) const {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size());
  for (const auto& token : tokens) ids.push_back(id(token));
  return ids;
}

std::string Vocabulary::to_text() const {
  std::ostringstream text;
  for (int64_t i = 0; i < size(); ++i) text << tokens_[i] << ' ' << counts_[i] << '\n';
  return text.str();
}

void Vocabulary::save(const std::string& path) const { write_file_atomically(path, to_text()); }

Vocabulary Vocabulary::load(const std::string& path) {
  std::ifstream file(path);
  QNOISE_CHECK(file.good(), "cannot open vocabulary file '", path, "'");
  return parse(file, path);
}

Vocabulary Vocabulary::from_text(const std::string& text, const std::string& source) {
  std::istringstream stream(text);
  return parse(stream, source);
}

Vocabulary Vocabulary::parse(std::istream& file, const std::string& path) {
  Vocabulary vocabulary;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(file, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream fields(line);
    std::string token, count_text, extra;
    fields >> token >> count_text >> extra;
    int64_t count = 0;
    QNOISE_CHECK(!token.empty() && parse_count(count_text, count) && extra.empty(), path, ":",
                 line_number, ": expected 'token count', got '", line, "'");
    if (line_number <= kSpecialCount) {
      QNOISE_CHECK(token == vocabulary.tokens_[line_number - 1], path, ":", line_number,
                   ": expected special token '", vocabulary.tokens_[line_number - 1], "', got '",
                   token, "'");
      vocabulary.counts_[line_number - 1] = count;
      continue;
    }
    QNOISE_CHECK(!vocabulary.contains(token), path, ":", line_number, ": duplicate token '", token, "'");
    vocabulary.add(token, count);
  }
  QNOISE_CHECK(line_number >= kSpecialCount, path, ": vocabulary file has ", line_number,
               " lines; it must start with the ", kSpecialCount, " special tokens");
  return vocabulary;
}

}  // namespace qnoise
