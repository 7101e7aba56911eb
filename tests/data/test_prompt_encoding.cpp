// Raw text to a language model's ids and back: what `qnoise generate` does with a prompt.
#include <gtest/gtest.h>

#include "qnoise/text_corpus.h"

namespace {

qnoise::Vocabulary small_vocabulary() {
  return qnoise::Vocabulary::build({"in", "the", "beginning", ",", "God", "'s", "@-@", "well", "known", "."});
}

std::vector<std::string> tokens(const std::vector<int64_t>& ids, const qnoise::Vocabulary& vocabulary) {
  std::vector<std::string> out;
  for (int64_t id : ids) out.push_back(vocabulary.token(id));
  return out;
}

}  // namespace

TEST(PromptEncoding, StartsAfterALineEndSplitsPunctuationAndMarksUnknownWords) {
  const auto vocabulary = small_vocabulary();
  EXPECT_EQ(tokens(qnoise::encode_prompt("In the beginning, God's", vocabulary), vocabulary),
            (std::vector<std::string>{"</s>", "<unk>", "the", "beginning", ",", "God", "'s"}));
  // Words the vocabulary holds whole stay whole (pre-tokenised WikiText).
  EXPECT_EQ(tokens(qnoise::encode_prompt("well @-@ known <unk>", vocabulary), vocabulary),
            (std::vector<std::string>{"</s>", "well", "@-@", "known", "<unk>"}));
  EXPECT_EQ(qnoise::encode_prompt("", vocabulary), (std::vector<int64_t>{qnoise::Vocabulary::kEndOfSentenceId}));
  // A newline ends a line; an unterminated last line is to be continued.
  EXPECT_EQ(tokens(qnoise::encode_prompt("the .\n\nin", vocabulary), vocabulary),
            (std::vector<std::string>{"</s>", "the", ".", "</s>", "in"}));
  EXPECT_EQ(tokens(qnoise::encode_prompt("the .\n", vocabulary), vocabulary),
            (std::vector<std::string>{"</s>", "the", ".", "</s>"}));
}

TEST(PromptEncoding, DecodingJoinsTokensWithSpacesAndEndsLinesAtEos) {
  const auto vocabulary = small_vocabulary();
  const auto ids = vocabulary.encode({"the", "beginning", "</s>", "in", "the"});
  EXPECT_EQ(qnoise::decode_tokens(ids, vocabulary), "the beginning\nin the");
  EXPECT_EQ(qnoise::decode_tokens(ids, vocabulary, /*at_line_start=*/false), " the beginning\nin the");
}
