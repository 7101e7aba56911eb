#pragma once
// WikiText-format language-modelling corpora and the batcher that cuts them into training windows.
//
// A WikiText directory holds wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens: text
// already split into tokens by whitespace. Each non-empty line gets one </s> appended (blank lines
// add nothing), tokens outside the vocabulary become <unk>. The vocabulary is built from the
// training file only. WikiText-2 and WikiText-103 (raw ".tokens" files) load unchanged, as do the
// files `qnoise data kjv` writes.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "qnoise/vocabulary.h"

namespace qnoise {

// Adds the tokens of one file (with one </s> per non-empty line) to `counts`; returns how many.
// Streams the file, so WikiText-103's 540 MB never sit in memory as strings.
int64_t count_tokens(const std::string& path, std::unordered_map<std::string, int64_t>& counts);

// The file's token ids (int64, 1-D), one </s> per non-empty line, <unk> for unknown tokens.
at::Tensor encode_tokens_file(const std::string& path, const Vocabulary& vocabulary);

// Raw text as the ids a language model trained on such a corpus reads: one </s> first (the end of
// the line before, where every training line starts), then each line's tokens, with </s> after
// every non-empty line that a newline ends (an unterminated last line is to be continued). A whitespace-separated
// word the vocabulary holds is one token (pre-tokenised WikiText: "@-@", "<unk>"); any other word
// is split into words and punctuation as `qnoise data kjv` tokenised its corpus (tokenize_kjv:
// "beginning," -> "beginning ,"). Unknown tokens become <unk>. "" gives {</s>}.
std::vector<int64_t> encode_prompt(const std::string& text, const Vocabulary& vocabulary);

// Ids as text: tokens joined by spaces, </s> as a newline. `at_line_start`: whether the text
// before ends a line (no space before the first token).
std::string decode_tokens(const std::vector<int64_t>& ids, const Vocabulary& vocabulary, bool at_line_start = true);

struct TextCorpus {
  Vocabulary vocabulary;
  at::Tensor train, valid, test;  // 1-D int64 id streams
};

// Reads <directory>/wiki.{train,valid,test}.tokens. Throws qnoise::Error naming the file when one
// is missing or holds no tokens.
TextCorpus load_wikitext(const std::string& directory, const VocabularyOptions& options = {});
// The same with a given vocabulary (a model's own ids) instead of one built from the training split.
TextCorpus load_wikitext(const std::string& directory, const Vocabulary& vocabulary);

struct LmBatch {
  at::Tensor input;   // [batch, length]
  at::Tensor target;  // [batch, length]: input shifted left by one token
};

// Cuts a 1-D token stream into next-token-prediction windows, the way fairseq and the PyTorch
// word_language_model example do: the stream is split into `batch_size` contiguous rows (the
// last stream.size(0) % batch_size tokens are dropped), and window i holds columns
// [i*seq_len, i*seq_len + seq_len] of every row, i.e. [batch, seq_len + 1]. Consecutive windows
// share one column, so every token of a row but its first is a target exactly once. The last
// window is shorter when the row length minus one is not a multiple of seq_len.
class LmBatcher {
 public:
  LmBatcher(const at::Tensor& stream, int64_t batch_size, int64_t seq_len);

  int64_t size() const { return n_windows_; }
  int64_t batch_size() const { return rows_.size(0); }
  int64_t seq_len() const { return seq_len_; }
  // Tokens per row after the trim to a multiple of batch_size.
  int64_t row_length() const { return rows_.size(1); }

  at::Tensor window(int64_t index) const;  // [batch, <= seq_len + 1], a view of the rows
  LmBatch batch(int64_t index) const;

 private:
  at::Tensor rows_;  // [batch, row_length]
  int64_t seq_len_;
  int64_t n_windows_;
};

}  // namespace qnoise
