#include <gtest/gtest.h>

#include <fstream>

#include "qnoise/error.h"
#include "qnoise/sentence_pairs.h"

namespace {

std::string write_text(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

void expect_error_containing(const std::string& path, const std::string& part) {
  try {
    qnoise::read_sentence_pairs(path);
    FAIL() << "expected qnoise::Error containing '" << part << "'";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(SentencePairs, ReadsIntegerLabelsByColumnName) {
  auto path = write_text("qnoise_pairs_int.tsv",
                         "label\thypothesis\tpremise\n1\tb .\ta .\n0\td\tc\r\n\n3\tf\te\n");
  auto set = qnoise::read_sentence_pairs(path);
  ASSERT_EQ(set.pairs.size(), 3u);
  EXPECT_EQ(set.pairs[0].premise, "a .");
  EXPECT_EQ(set.pairs[0].hypothesis, "b .");
  EXPECT_EQ(set.pairs[0].label, 1);
  EXPECT_EQ(set.pairs[1].premise, "c");
  EXPECT_EQ(set.pairs[1].label, 0);
  EXPECT_EQ(set.pairs[2].label, 3);
  EXPECT_EQ(set.label_names, (std::vector<std::string>{"0", "1", "2", "3"}));
}

TEST(SentencePairs, MapsMnliLabelNamesAndFindsGlueColumns) {
  // MNLI's own layout: index, genre, sentence1, sentence2, gold_label among other columns.
  auto path = write_text("qnoise_pairs_mnli.tsv",
                         "index\tgenre\tsentence1\tsentence2\tgold_label\n"
                         "0\tfiction\tA man sleeps.\tA man is awake.\tcontradiction\n"
                         "1\tfiction\tA dog runs.\tAn animal moves.\tentailment\n"
                         "2\tgov\tIt rained.\tIt was cold.\tneutral\n");
  auto set = qnoise::read_sentence_pairs(path);
  ASSERT_EQ(set.pairs.size(), 3u);
  EXPECT_EQ(set.pairs[0].premise, "A man sleeps.");
  EXPECT_EQ(set.pairs[0].hypothesis, "A man is awake.");
  EXPECT_EQ(set.pairs[0].label, 2);
  EXPECT_EQ(set.pairs[1].label, 0);
  EXPECT_EQ(set.pairs[2].label, 1);
  EXPECT_EQ(set.label_names, (std::vector<std::string>{"entailment", "neutral", "contradiction"}));
  EXPECT_EQ(set.n_labels(), 3);
}

TEST(SentencePairs, BadFilesNameTheFileAndLine) {
  auto no_label = write_text("qnoise_pairs_no_label.tsv", "premise\thypothesis\n a\tb\n");
  expect_error_containing(no_label, no_label + ":1: no label column");
  auto no_premise = write_text("qnoise_pairs_no_premise.tsv", "text\thypothesis\tlabel\na\tb\t0\n");
  expect_error_containing(no_premise, no_premise + ":1: no premise column");
  auto columns = write_text("qnoise_pairs_columns.tsv", "premise\thypothesis\tlabel\na\tb\t0\na\tb\n");
  expect_error_containing(columns, columns + ":3: 2 columns, the header has 3");
  auto bad_label = write_text("qnoise_pairs_bad_label.tsv", "premise\thypothesis\tlabel\na\tb\tmaybe\n");
  expect_error_containing(bad_label, bad_label + ":2: bad label 'maybe'");
  auto negative = write_text("qnoise_pairs_negative.tsv", "premise\thypothesis\tlabel\na\tb\t-1\n");
  expect_error_containing(negative, negative + ":2: bad label '-1'");
  auto mixed = write_text("qnoise_pairs_mixed.tsv", "premise\thypothesis\tlabel\na\tb\t0\na\tb\tneutral\n");
  expect_error_containing(mixed, mixed + ":3: label 'neutral' mixes");
  auto huge = write_text("qnoise_pairs_huge_label.tsv", "premise\thypothesis\tlabel\na\tb\t999999999\n");
  expect_error_containing(huge, huge + ":2: label 999999999 is beyond the 1000 classes");
  auto header_only = write_text("qnoise_pairs_header_only.tsv", "premise\thypothesis\tlabel\n");
  expect_error_containing(header_only, header_only + ": no sentence pairs");
  auto empty = write_text("qnoise_pairs_empty.tsv", "");
  expect_error_containing(empty, empty + ": empty file");
  expect_error_containing("/nonexistent/pairs.tsv", "/nonexistent/pairs.tsv");
}
