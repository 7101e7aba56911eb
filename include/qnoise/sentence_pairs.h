#pragma once
// Sentence-pair classification data in GLUE/MNLI TSV form (MNLI, RTE, QNLI, the KJV next-verse
// task): a header row, tab-separated columns found by name, no quoting.
//
// Columns: premise or sentence1 (or question), hypothesis or sentence2, and label (or MNLI's
// gold_label). Labels are either all integers >= 0 (label_names = "0".."max") or all MNLI names,
// mapped as GLUE does: entailment 0, neutral 1, contradiction 2.
#include <cstdint>
#include <string>
#include <vector>

namespace qnoise {

struct SentencePair {
  std::string premise;
  std::string hypothesis;
  int64_t label = 0;  // -1 in a file without labels
};

struct SentencePairSet {
  std::vector<SentencePair> pairs;
  std::vector<std::string> label_names;  // label id -> name; empty without labels
  bool labelled = true;                   // false: the file had no label column
  int64_t n_labels() const { return static_cast<int64_t>(label_names.size()); }
};

// Throws qnoise::Error naming the file (and line) for a missing file or column, a row with the
// wrong number of columns, a bad or mixed label, or a file with no rows. With
// `labels_required` false, a file without a label column is read too (pairs to classify).
SentencePairSet read_sentence_pairs(const std::string& path, bool labels_required = true);

}  // namespace qnoise
