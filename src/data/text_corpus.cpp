#include "qnoise/text_corpus.h"

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/kjv_corpus.h"

namespace qnoise {

namespace {

std::ifstream open_tokens_file(const std::string& path) {
  std::ifstream file(path);
  QNOISE_CHECK(file.good(), "cannot open text file '", path, "'");
  return file;
}

// Calls on_token for every token of the file, plus </s> after each non-empty line.
template <typename OnToken>
void for_each_token(const std::string& path, OnToken on_token) {
  std::ifstream file = open_tokens_file(path);
  std::string line, token;
  while (std::getline(file, line)) {
    std::istringstream words(line);
    bool any = false;
    while (words >> token) {
      on_token(token);
      any = true;
    }
    if (any) on_token(Vocabulary::kEndOfSentence);
  }
  QNOISE_CHECK(!file.bad(), "error reading text file '", path, "'");
}

}  // namespace

int64_t count_tokens(const std::string& path, std::unordered_map<std::string, int64_t>& counts) {
  int64_t total = 0;
  for_each_token(path, [&](const std::string& token) {
    ++counts[token];
    ++total;
  });
  return total;
}

at::Tensor encode_tokens_file(const std::string& path, const Vocabulary& vocabulary) {
  std::vector<int64_t> ids;
  for_each_token(path, [&](const std::string& token) { ids.push_back(vocabulary.id(token)); });
  return at::tensor(ids, at::kLong);
}

std::vector<int64_t> encode_prompt(const std::string& text, const Vocabulary& vocabulary) {
  std::vector<int64_t> ids{Vocabulary::kEndOfSentenceId};
  std::istringstream lines(text);
  std::string line, word;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    bool any = false;
    while (words >> word) {
      any = true;
      if (vocabulary.contains(word)) {
        ids.push_back(vocabulary.id(word));
        continue;
      }
      for (const auto& token : tokenize_kjv(word)) ids.push_back(vocabulary.id(token));
    }
    // A line ends (</s>) at its newline; an unterminated last line goes on.
    const bool terminated = !lines.eof();
    if (any && terminated) ids.push_back(Vocabulary::kEndOfSentenceId);
  }
  return ids;
}

std::string decode_tokens(const std::vector<int64_t>& ids, const Vocabulary& vocabulary, bool at_line_start) {
  std::string text;
  for (int64_t id : ids) {
    if (id == Vocabulary::kEndOfSentenceId) {
      text += '\n';
      at_line_start = true;
      continue;
    }
    if (!at_line_start) text += ' ';
    text += vocabulary.token(id);
    at_line_start = false;
  }
  return text;
}

namespace {

std::string wikitext_path(const std::string& directory, const char* split) {
  return directory + "/wiki." + split + ".tokens";
}

}  // namespace

TextCorpus load_wikitext(const std::string& directory, const VocabularyOptions& options) {
  std::unordered_map<std::string, int64_t> counts;
  const int64_t train_tokens = count_tokens(wikitext_path(directory, "train"), counts);
  QNOISE_CHECK(train_tokens > 0, "text file '", wikitext_path(directory, "train"), "' holds no tokens");
  return load_wikitext(directory, Vocabulary::from_counts(counts, options));
}

TextCorpus load_wikitext(const std::string& directory, const Vocabulary& vocabulary) {
  TextCorpus corpus;
  corpus.vocabulary = vocabulary;
  for (auto [split, stream] : {std::pair{"train", &corpus.train}, {"valid", &corpus.valid}, {"test", &corpus.test}}) {
    *stream = encode_tokens_file(wikitext_path(directory, split), corpus.vocabulary);
    QNOISE_CHECK(stream->numel() > 0, "text file '", wikitext_path(directory, split), "' holds no tokens");
  }
  return corpus;
}

LmBatcher::LmBatcher(const at::Tensor& stream, int64_t batch_size, int64_t seq_len)
    : seq_len_(seq_len) {
  QNOISE_CHECK(stream.dim() == 1, "a token stream must be 1-D, got ", stream.dim(), " dimensions");
  QNOISE_CHECK(batch_size >= 1 && seq_len >= 1, "batch size and sequence length must be positive, got ",
               batch_size, " and ", seq_len);
  const int64_t row_length = stream.size(0) / batch_size;
  QNOISE_CHECK(row_length >= 2, "a stream of ", stream.size(0), " tokens is too short for ",
               batch_size, " rows of at least 2 tokens");
  rows_ = stream.narrow(0, 0, row_length * batch_size).view({batch_size, row_length});
  n_windows_ = (row_length - 1 + seq_len - 1) / seq_len;
}

at::Tensor LmBatcher::window(int64_t index) const {
  QNOISE_CHECK(index >= 0 && index < n_windows_, "window ", index, " is outside the ", n_windows_,
               " windows of the stream");
  const int64_t start = index * seq_len_;
  const int64_t length = std::min(seq_len_ + 1, row_length() - start);
  return rows_.narrow(1, start, length);
}

LmBatch LmBatcher::batch(int64_t index) const {
  at::Tensor tokens = window(index);
  const int64_t length = tokens.size(1) - 1;
  return {tokens.narrow(1, 0, length), tokens.narrow(1, 1, length)};
}

}  // namespace qnoise
