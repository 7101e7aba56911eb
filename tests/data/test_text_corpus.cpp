#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "qnoise/error.h"
#include "qnoise/text_corpus.h"

namespace {

using qnoise::Vocabulary;

std::string make_directory(const std::string& name) {
  const std::string directory = testing::TempDir() + name;
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  return directory;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<int64_t> to_vector(const at::Tensor& tensor) {
  at::Tensor flat = tensor.contiguous();
  return {flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel()};
}

// WikiText's own shape: a leading blank line, " = Heading = " lines, " \n" blank lines, <unk>.
std::string write_small_wikitext(const std::string& name) {
  const std::string directory = make_directory(name);
  write_text(directory + "/wiki.train.tokens", " \n = Cats = \n \n the cat sat on the mat \n the <unk> sat \n");
  write_text(directory + "/wiki.valid.tokens", " the dog sat \r\n\n");
  write_text(directory + "/wiki.test.tokens", "cat\tmat\n");
  return directory;
}

}  // namespace

TEST(TextCorpus, AppendsOneEndOfSentencePerNonEmptyLineAndMapsUnknownTokens) {
  const auto directory = write_small_wikitext("qnoise_wikitext_small");
  auto corpus = qnoise::load_wikitext(directory);
  // counts: the 3, </s> 3, = 2, sat 2, Cats 1, cat 1, mat 1, on 1, <unk> 1
  const std::vector<std::string> expected = {"<pad>", "</s>", "<unk>", "the", "=", "sat", "Cats", "cat", "mat", "on"};
  ASSERT_EQ(corpus.vocabulary.size(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(corpus.vocabulary.token(i), expected[i]);
  EXPECT_EQ(corpus.train.scalar_type(), at::kLong);
  EXPECT_EQ(to_vector(corpus.train), (std::vector<int64_t>{4, 6, 4, 1, 3, 7, 5, 9, 3, 8, 1, 3, 2, 5, 1}));
  EXPECT_EQ(to_vector(corpus.valid), (std::vector<int64_t>{3, 2, 5, 1}));  // dog -> <unk>
  EXPECT_EQ(to_vector(corpus.test), (std::vector<int64_t>{7, 8, 1}));
}

TEST(TextCorpus, MissingOrEmptyFilesNameTheFile) {
  const auto directory = make_directory("qnoise_wikitext_bad");
  try {
    qnoise::load_wikitext(directory);
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find(directory + "/wiki.train.tokens"), std::string::npos) << e.what();
  }
  write_text(directory + "/wiki.train.tokens", " \n \n");
  write_text(directory + "/wiki.valid.tokens", "a\n");
  write_text(directory + "/wiki.test.tokens", "a\n");
  try {
    qnoise::load_wikitext(directory);
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("wiki.train.tokens' holds no tokens"), std::string::npos) << e.what();
  }
  write_text(directory + "/wiki.train.tokens", "a b\n");
  write_text(directory + "/wiki.test.tokens", "\n");
  try {
    qnoise::load_wikitext(directory);
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("wiki.test.tokens' holds no tokens"), std::string::npos) << e.what();
  }
}

TEST(TextCorpus, BatcherWindowsAreContiguousRowsAndTargetsShiftByOne) {
  // 23 tokens, 2 rows of 11 (token 22 dropped), windows of 4 + 1 columns.
  at::Tensor stream = at::arange(23, at::kLong);
  qnoise::LmBatcher batcher(stream, 2, 4);
  EXPECT_EQ(batcher.row_length(), 11);
  ASSERT_EQ(batcher.size(), 3);  // columns 0-4, 4-8, 8-10
  EXPECT_EQ(to_vector(batcher.window(0)), (std::vector<int64_t>{0, 1, 2, 3, 4, 11, 12, 13, 14, 15}));
  auto last = batcher.batch(2);
  EXPECT_EQ(to_vector(last.input), (std::vector<int64_t>{8, 9, 19, 20}));
  EXPECT_EQ(to_vector(last.target), (std::vector<int64_t>{9, 10, 20, 21}));
  // Every token of a row but the first is a target exactly once, in order.
  std::vector<int64_t> targets_of_row0, inputs_of_row0;
  for (int64_t i = 0; i < batcher.size(); ++i) {
    auto batch = batcher.batch(i);
    EXPECT_TRUE(at::equal(batch.input.narrow(1, 1, batch.input.size(1) - 1),
                          batch.target.narrow(1, 0, batch.target.size(1) - 1)));
    for (int64_t t : to_vector(batch.target[0])) targets_of_row0.push_back(t);
    for (int64_t t : to_vector(batch.input[0])) inputs_of_row0.push_back(t);
  }
  EXPECT_EQ(targets_of_row0, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(inputs_of_row0, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(TextCorpus, BatcherRejectsTooShortStreams) {
  EXPECT_THROW(qnoise::LmBatcher(at::arange(3, at::kLong), 2, 4), qnoise::Error);
  EXPECT_THROW(qnoise::LmBatcher(at::arange(30, at::kLong), 2, 0), qnoise::Error);
  EXPECT_THROW(qnoise::LmBatcher(at::arange(30, at::kLong).view({5, 6}), 2, 4), qnoise::Error);
  qnoise::LmBatcher exact(at::arange(10, at::kLong), 2, 4);  // rows of 5: one full window
  EXPECT_EQ(exact.size(), 1);
  EXPECT_EQ(exact.window(0).size(1), 5);
  EXPECT_THROW(exact.window(1), qnoise::Error);
}
