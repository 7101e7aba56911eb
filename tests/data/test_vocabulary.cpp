#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "qnoise/error.h"
#include "qnoise/vocabulary.h"

namespace {

using qnoise::Vocabulary;
using qnoise::VocabularyOptions;

std::vector<std::string> sample_stream() {
  // the:3  cat:2  sat:2  mat:1  on:1  <unk>:1  </s>:2
  return {"the", "cat", "sat", "</s>", "the", "cat", "sat", "on", "<unk>", "the", "mat", "</s>"};
}

std::string write_text(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

void expect_error_containing(const std::function<void()>& action, const std::string& part) {
  try {
    action();
    FAIL() << "expected qnoise::Error containing '" << part << "'";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Vocabulary, SpecialTokensHaveFixedIds) {
  Vocabulary vocabulary;
  EXPECT_EQ(vocabulary.size(), 3);
  EXPECT_EQ(vocabulary.token(Vocabulary::kPadId), "<pad>");
  EXPECT_EQ(vocabulary.token(Vocabulary::kEndOfSentenceId), "</s>");
  EXPECT_EQ(vocabulary.token(Vocabulary::kUnknownId), "<unk>");
}

TEST(Vocabulary, OrdersByCountThenTokenAndCountsSpecials) {
  auto vocabulary = Vocabulary::build(sample_stream());
  const std::vector<std::string> expected = {"<pad>", "</s>", "<unk>", "the", "cat", "sat", "mat", "on"};
  ASSERT_EQ(vocabulary.size(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(vocabulary.token(i), expected[i]) << i;
  EXPECT_EQ(vocabulary.count(vocabulary.id("the")), 3);
  EXPECT_EQ(vocabulary.count(Vocabulary::kEndOfSentenceId), 2);
  EXPECT_EQ(vocabulary.count(Vocabulary::kUnknownId), 1);
  EXPECT_EQ(vocabulary.count(Vocabulary::kPadId), 0);
  EXPECT_EQ(vocabulary.encode({"the", "dog", "mat", "</s>"}), (std::vector<int64_t>{3, 2, 6, 1}));
}

TEST(Vocabulary, MinCountAndMaxSizeDropTheRarestTokens) {
  auto frequent = Vocabulary::build(sample_stream(), VocabularyOptions().set_min_count(2));
  EXPECT_EQ(frequent.size(), 6);  // specials + the, cat, sat
  EXPECT_FALSE(frequent.contains("mat"));
  EXPECT_EQ(frequent.id("mat"), Vocabulary::kUnknownId);
  auto small = Vocabulary::build(sample_stream(), VocabularyOptions().set_max_size(5));
  ASSERT_EQ(small.size(), 5);
  EXPECT_EQ(small.token(3), "the");
  EXPECT_EQ(small.token(4), "cat");  // ties cat/sat broken by token
  EXPECT_THROW(Vocabulary::build({}, VocabularyOptions().set_max_size(2)), qnoise::Error);
  EXPECT_THROW(Vocabulary::build({}, VocabularyOptions().set_min_count(0)), qnoise::Error);
}

TEST(Vocabulary, SaveLoadRoundTrip) {
  auto vocabulary = Vocabulary::build(sample_stream());
  const std::string path = testing::TempDir() + "qnoise_vocab_roundtrip.txt";
  vocabulary.save(path);
  std::ifstream file(path);
  std::string first, second, fourth;
  std::getline(file, first);
  std::getline(file, second);
  std::getline(file, fourth);
  std::getline(file, fourth);
  EXPECT_EQ(first, "<pad> 0");
  EXPECT_EQ(second, "</s> 2");
  EXPECT_EQ(fourth, "the 3");
  auto loaded = Vocabulary::load(path);
  ASSERT_EQ(loaded.size(), vocabulary.size());
  for (int64_t i = 0; i < vocabulary.size(); ++i) {
    EXPECT_EQ(loaded.token(i), vocabulary.token(i));
    EXPECT_EQ(loaded.count(i), vocabulary.count(i));
  }
}

TEST(Vocabulary, CorruptFilesNameTheFileAndLine) {
  const std::string specials = "<pad> 0\n</s> 5\n<unk> 1\n";
  auto bad_count = write_text("qnoise_vocab_bad_count.txt", specials + "the 3\ncat x\n");
  expect_error_containing([&] { Vocabulary::load(bad_count); }, bad_count + ":5:");
  auto extra_field = write_text("qnoise_vocab_extra.txt", specials + "the 3 4\n");
  expect_error_containing([&] { Vocabulary::load(extra_field); }, extra_field + ":4:");
  auto duplicate = write_text("qnoise_vocab_duplicate.txt", specials + "the 3\nthe 2\n");
  expect_error_containing([&] { Vocabulary::load(duplicate); }, "duplicate token 'the'");
  auto no_specials = write_text("qnoise_vocab_no_specials.txt", "the 3\n");
  expect_error_containing([&] { Vocabulary::load(no_specials); }, no_specials + ":1:");
  auto empty = write_text("qnoise_vocab_empty.txt", "");
  expect_error_containing([&] { Vocabulary::load(empty); }, empty);
  expect_error_containing([&] { Vocabulary::load("/nonexistent/vocab.txt"); }, "/nonexistent/vocab.txt");
}
