#pragma once
// The King James Bible (Debian package bible-kjv) as a small real corpus: a WikiText-format
// language-modelling set and a next-verse sentence-pair task, both split by whole books.
//
// Tokenisation keeps case, as WikiText does (names such as "God" and "LORD" differ from common
// words), and splits punctuation from words: each of , . ; : ? ! ( ) is a token, a run of
// hyphens standing alone ("--") is one token, a possessive "'s" or a trailing "'" is its own token,
// and hyphens inside words stay ("loving-kindness"). "beginning," -> "beginning ,".
//
// Split (fixed, by whole books; about 90/5/5 % of tokens, each held-out split mixing narrative,
// wisdom, prophecy, gospel or history, and epistles):
//   valid: Ruth, Ecclesiastes, Daniel, Mark, Galatians, James
//   test:  Esther, Proverbs, Hosea, Jonah, Romans, 1 Peter
//   train: the other 54 books
#include <cstdint>
#include <string>
#include <vector>

namespace qnoise {

struct Verse {
  std::string book;  // as `bible` prints it: "Genesis", "1 Samuel", "Song of Solomon"
  int chapter = 0;
  int verse = 0;
  std::string text;  // untokenised, wrapped lines joined by one space
};

// Parses the output of `bible <range>`: "Book N" chapter headings after a blank line, verses that
// start with "  N " and continue on unindented lines. `source` names the text in errors.
std::vector<Verse> parse_bible_output(const std::string& text, const std::string& source = "bible output");

// Runs `bible gen1:1-rev22:21` and parses it: 31102 verses of 66 books. Throws qnoise::Error
// naming the bible-kjv package when the program is missing.
std::vector<Verse> read_kjv_bible();

std::vector<std::string> tokenize_kjv(const std::string& text);
// The tokens joined by single spaces.
std::string tokenized_kjv_line(const std::string& text);

enum class KjvSplit { Train, Valid, Test };
const char* split_name(KjvSplit split);  // "train", "valid", "test"
KjvSplit kjv_split_of(const std::string& book);
const std::vector<std::string>& kjv_valid_books();
const std::vector<std::string>& kjv_test_books();

struct KjvSplitSummary {
  KjvSplit split = KjvSplit::Train;
  std::vector<std::string> books;  // in Bible order
  int64_t verses = 0;
  int64_t tokens = 0;     // including one </s> per verse, as a WikiText reader counts them
  int64_t pairs = 0;      // sentence pairs written (pair files only)
  std::string path;       // the file written
};

// Writes <out>/wiki.{train,valid,test}.tokens (one tokenised verse per line) and README.txt
// listing the books of each split. Creates `out_dir`; every file is written to a temporary name
// in it and renamed, so a reader never sees half a file.
std::vector<KjvSplitSummary> write_kjv_wikitext(const std::vector<Verse>& verses, const std::string& out_dir);

// Writes <out>/{train,valid,test}.tsv with header "premise\thypothesis\tlabel" (tokenised text):
// for every verse followed by another verse of the same book, one row with that next verse
// (label 1) and one with a verse drawn at random from elsewhere in the same split (label 0), rows
// shuffled; the same seed gives the same files on every platform. Plus README.txt.
std::vector<KjvSplitSummary> write_kjv_pairs(const std::vector<Verse>& verses, const std::string& out_dir,
                                             uint64_t seed = 0);

}  // namespace qnoise
