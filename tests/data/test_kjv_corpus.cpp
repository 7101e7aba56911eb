#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "qnoise/error.h"
#include "qnoise/kjv_corpus.h"
#include "qnoise/sentence_pairs.h"
#include "qnoise/text_corpus.h"

namespace {

// `bible` output in miniature: blank line, "Book N", blank line, verses indented "  N ", long
// verses wrapped onto unindented lines.
const char* const kSample =
    "\nGenesis 1\n\n"
    "  1 In the beginning God created the heaven and the earth.\n"
    "  2 And the earth was without form, and void; and darkness was upon the face of\n"
    "the deep.\n"
    "  3 And God said, Let there be light: and there was light.\n"
    "  4 And God saw the light, that it was good.\n"
    "\nGenesis 2\n\n"
    "  1 Thus the heavens and the earth were finished.\n"
    "\nSong of Solomon 1\n\n"
    "  1 The song of songs, which is Solomon's.\n"
    "  2 Let him kiss me (for thy love is better than wine)!\n"
    "\nRuth 1\n\n"
    "  1 Now it came to pass in the days when the judges ruled.\n"
    "  2 And the name of the man was Elimelech.\n"
    "  3 And Elimelech Naomi's husband died.\n"
    "\nEsther 1\n\n"
    "  1 Now it came to pass in the days of Ahasuerus.\n"
    "  2 That in those days the king sat on the throne?\n"
    "  3 In the third year of his reign, he made a feast.\n";

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string fresh_directory(const std::string& name) {
  const std::string directory = testing::TempDir() + name;
  std::filesystem::remove_all(directory);
  return directory;
}

bool bible_installed() { return std::system("command -v bible >/dev/null 2>&1") == 0; }

}  // namespace

TEST(KjvCorpus, ParsesBibleOutputIntoVerses) {
  auto verses = qnoise::parse_bible_output(kSample);
  ASSERT_EQ(verses.size(), 13u);
  EXPECT_EQ(verses[0].book, "Genesis");
  EXPECT_EQ(verses[0].chapter, 1);
  EXPECT_EQ(verses[0].verse, 1);
  EXPECT_EQ(verses[0].text, "In the beginning God created the heaven and the earth.");
  EXPECT_EQ(verses[1].text, "And the earth was without form, and void; and darkness was upon the face of the deep.");
  EXPECT_EQ(verses[4].chapter, 2);
  EXPECT_EQ(verses[4].verse, 1);
  EXPECT_EQ(verses[5].book, "Song of Solomon");
  EXPECT_EQ(verses[12].book, "Esther");
  EXPECT_EQ(verses[12].verse, 3);
}

TEST(KjvCorpus, RejectsMalformedOutputNamingTheSourceAndLine) {
  auto expect_error = [](const std::string& text, const std::string& part) {
    try {
      qnoise::parse_bible_output(text, "sample.txt");
      FAIL() << "expected an error for: " << text;
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error("\n  1 In the beginning\n", "sample.txt:2: verse before any");
  expect_error("\nGenesis\n\n  1 In the beginning\n", "sample.txt:2: expected a chapter heading");
  expect_error("\nGenesis 1\n\n  x In the beginning\n", "sample.txt:4: expected a verse");
  expect_error("\n\n", "sample.txt: no verses");
}

TEST(KjvCorpus, TokenisationKeepsCaseAndSplitsPunctuation) {
  EXPECT_EQ(qnoise::tokenized_kjv_line("In the beginning, God created."), "In the beginning , God created .");
  EXPECT_EQ(qnoise::tokenized_kjv_line("the LORD's loving-kindness; (selah)!"),
            "the LORD 's loving-kindness ; ( selah ) !");
  EXPECT_EQ(qnoise::tokenized_kjv_line("blot me, I pray thee, out of thy book--; sons' sons'?"),
            "blot me , I pray thee , out of thy book -- ; sons ' sons ' ?");
  EXPECT_EQ(qnoise::tokenize_kjv("  Amen.  ").size(), 2u);
}

TEST(KjvCorpus, SplitsByWholeBooks) {
  EXPECT_EQ(qnoise::kjv_split_of("Genesis"), qnoise::KjvSplit::Train);
  EXPECT_EQ(qnoise::kjv_split_of("Mark"), qnoise::KjvSplit::Valid);
  EXPECT_EQ(qnoise::kjv_split_of("1 Peter"), qnoise::KjvSplit::Test);
  const auto directory = fresh_directory("qnoise_kjv_sample");
  auto splits = qnoise::write_kjv_wikitext(qnoise::parse_bible_output(kSample), directory);
  ASSERT_EQ(splits.size(), 3u);
  EXPECT_EQ(splits[0].books, (std::vector<std::string>{"Genesis", "Song of Solomon"}));
  EXPECT_EQ(splits[1].verses, 3);
  EXPECT_EQ(read_file(directory + "/wiki.valid.tokens"),
            "Now it came to pass in the days when the judges ruled .\n"
            "And the name of the man was Elimelech .\n"
            "And Elimelech Naomi 's husband died .\n");
  EXPECT_EQ(splits[1].tokens, 14 + 10 + 8);  // with one </s> per verse
  EXPECT_NE(read_file(directory + "/README.txt").find("valid: 1 books, 3 verses"), std::string::npos);
  auto corpus = qnoise::load_wikitext(directory);  // the files are WikiText for our own reader
  EXPECT_EQ(corpus.valid.numel(), splits[1].tokens);
  for (const auto& entry : std::filesystem::directory_iterator(directory))  // no temporaries left
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST(KjvCorpus, NextVersePairsAreBalancedAndSeeded) {
  const auto verses = qnoise::parse_bible_output(kSample);
  const auto first = fresh_directory("qnoise_kjv_pairs_a");
  const auto second = fresh_directory("qnoise_kjv_pairs_b");
  auto splits = qnoise::write_kjv_pairs(verses, first, 7);
  qnoise::write_kjv_pairs(verses, second, 7);
  // Train: Genesis 1:1-4 and 2:1 give 4 next-verse pairs, Song of Solomon 1 gives 1.
  EXPECT_EQ(splits[0].pairs, 10);
  EXPECT_EQ(splits[1].pairs, 4);
  EXPECT_EQ(read_file(first + "/train.tsv"), read_file(second + "/train.tsv"));
  auto set = qnoise::read_sentence_pairs(first + "/train.tsv");
  ASSERT_EQ(set.pairs.size(), 10u);
  int positives = 0;
  for (const auto& pair : set.pairs) {
    positives += pair.label == 1;
    EXPECT_NE(pair.premise, pair.hypothesis);
  }
  EXPECT_EQ(positives, 5);
  // Genesis ends a book in the train split: its last verse has no positive pair into Song of Solomon.
  for (const auto& pair : set.pairs)
    if (pair.label == 1) EXPECT_NE(pair.hypothesis, "The song of songs , which is Solomon 's .");
}

TEST(KjvCorpus, RejectsAnOutputDirectoryUnderARegularFile) {
  const std::string file = testing::TempDir() + "qnoise_kjv_not_a_directory";
  std::ofstream(file) << "x";
  try {
    qnoise::write_kjv_wikitext(qnoise::parse_bible_output(kSample), file + "/out");
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find(file + "/out"), std::string::npos) << e.what();
  }
}

TEST(KjvCorpus, FullBibleSplitsCoverEveryVerseOnce) {
  if (!bible_installed()) GTEST_SKIP() << "the Debian package bible-kjv is not installed";
  const auto verses = qnoise::read_kjv_bible();
  ASSERT_EQ(verses.size(), 31102u);
  std::set<std::string> books;
  for (const auto& verse : verses) books.insert(verse.book);
  EXPECT_EQ(books.size(), 66u);
  EXPECT_EQ(verses.back().book, "Revelation");
  EXPECT_EQ(verses.back().text, "The grace of our Lord Jesus Christ be with you all. Amen.");

  const auto directory = fresh_directory("qnoise_kjv_full");
  auto splits = qnoise::write_kjv_wikitext(verses, directory);
  std::set<std::string> seen;
  int64_t verse_total = 0, token_total = 0;
  for (const auto& split : splits) {
    for (const auto& book : split.books) EXPECT_TRUE(seen.insert(book).second) << book << " in two splits";
    verse_total += split.verses;
    token_total += split.tokens;
  }
  EXPECT_EQ(seen.size(), 66u);
  EXPECT_EQ(verse_total, 31102);
  EXPECT_EQ(splits[1].books.size(), qnoise::kjv_valid_books().size());
  EXPECT_EQ(splits[2].books.size(), qnoise::kjv_test_books().size());
  for (int i = 1; i <= 2; ++i) {  // held-out splits near 5 % of the tokens each
    EXPECT_GT(splits[i].tokens, token_total * 4 / 100);
    EXPECT_LT(splits[i].tokens, token_total * 6 / 100);
  }
  auto corpus = qnoise::load_wikitext(directory);
  EXPECT_EQ(corpus.train.numel() + corpus.valid.numel() + corpus.test.numel(), token_total);

  const auto pairs_a = fresh_directory("qnoise_kjv_full_pairs_a");
  const auto pairs_b = fresh_directory("qnoise_kjv_full_pairs_b");
  auto pair_splits = qnoise::write_kjv_pairs(verses, pairs_a, 3);
  qnoise::write_kjv_pairs(verses, pairs_b, 3);
  for (const char* name : {"train", "valid", "test"})
    EXPECT_EQ(read_file(pairs_a + "/" + name + ".tsv"), read_file(pairs_b + "/" + name + ".tsv")) << name;
  auto valid = qnoise::read_sentence_pairs(pairs_a + "/valid.tsv");
  int64_t positives = 0;
  for (const auto& pair : valid.pairs) positives += pair.label;
  EXPECT_EQ(static_cast<int64_t>(valid.pairs.size()), pair_splits[1].pairs);
  EXPECT_EQ(positives * 2, pair_splits[1].pairs);
  // Every verse but the last of each book starts one positive pair.
  EXPECT_EQ(pair_splits[1].pairs, 2 * (splits[1].verses - static_cast<int64_t>(splits[1].books.size())));
}
