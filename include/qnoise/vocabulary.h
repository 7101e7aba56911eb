#pragma once
// Token <-> id mapping for language-modelling text, built from a training token stream.
//
// Ids 0, 1, 2 are always the special tokens <pad>, </s> (end of line, the WikiText/fairseq
// convention) and <unk>; regular tokens follow by count (descending), ties broken by the token's
// byte order, so the same stream always gives the same ids.
#include <cstdint>
#include <iosfwd>
#include <string>
#include <unordered_map>
#include <vector>

namespace qnoise {

struct VocabularyOptions {
  // Tokens seen fewer times than this map to <unk>.
  int64_t min_count = 1;
  // Most entries, the three special tokens included (0: no limit). The rarest tokens are dropped.
  int64_t max_size = 0;

  VocabularyOptions& set_min_count(int64_t value) { min_count = value; return *this; }
  VocabularyOptions& set_max_size(int64_t value) { max_size = value; return *this; }
};

class Vocabulary {
 public:
  static constexpr int64_t kPadId = 0;
  static constexpr int64_t kEndOfSentenceId = 1;
  static constexpr int64_t kUnknownId = 2;
  static constexpr int64_t kSpecialCount = 3;
  static const char* const kPad;            // "<pad>"
  static const char* const kEndOfSentence;  // "</s>"
  static const char* const kUnknown;        // "<unk>"

  // Only the special tokens.
  Vocabulary();

  // From a token stream; special tokens in the stream (WikiText contains "<unk>") only add to
  // their own count.
  static Vocabulary build(const std::vector<std::string>& tokens, const VocabularyOptions& options = {});
  static Vocabulary from_counts(const std::unordered_map<std::string, int64_t>& counts,
                                const VocabularyOptions& options = {});

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  bool contains(const std::string& token) const { return ids_.count(token) != 0; }
  // The token's id, or kUnknownId.
  int64_t id(const std::string& token) const;
  const std::string& token(int64_t id) const;
  // How often the token was seen when the vocabulary was built.
  int64_t count(int64_t id) const;
  std::vector<int64_t> encode(const std::vector<std::string>& tokens) const;

  // Text file, one "token count" line per id, in id order (so line i + 1 holds id i).
  void save(const std::string& path) const;
  // Throws qnoise::Error naming the file and line on a malformed file.
  static Vocabulary load(const std::string& path);
  // The same text as save() writes, in memory (e.g. inside a checkpoint); `source` names it in
  // errors.
  std::string to_text() const;
  static Vocabulary from_text(const std::string& text, const std::string& source);

 private:
  static Vocabulary parse(std::istream& text, const std::string& source);
  void add(const std::string& token, int64_t count);

  std::vector<std::string> tokens_;
  std::vector<int64_t> counts_;
  std::unordered_map<std::string, int64_t> ids_;
};

}  // namespace qnoise
