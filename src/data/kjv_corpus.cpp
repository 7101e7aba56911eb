#include "qnoise/kjv_corpus.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "qnoise/atomic_file.h"
#include "qnoise/error.h"

namespace qnoise {

namespace {

constexpr const char* kBibleRange = "gen1:1-rev22:21";

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

bool all_digits(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "Song of Solomon 2" -> book "Song of Solomon", chapter 2; false when the line is no heading.
bool parse_heading(const std::string& line, std::string& book, int& chapter) {
  const size_t space = line.rfind(' ');
  if (space == std::string::npos || space == 0) return false;
  const std::string number = line.substr(space + 1);
  if (!all_digits(number) || number.size() > 4) return false;
  book = line.substr(0, space);
  chapter = std::stoi(number);
  return true;
}

// "  12 And God said," -> verse 12, text "And God said,".
bool parse_verse_start(const std::string& line, int& verse, std::string& text) {
  size_t start = line.find_first_not_of(' ');
  if (start == std::string::npos) return false;
  size_t end = start;
  while (end < line.size() && line[end] >= '0' && line[end] <= '9') ++end;
  if (end == start || end - start > 4 || end >= line.size() || line[end] != ' ') return false;
  verse = std::stoi(line.substr(start, end - start));
  text = line.substr(end + 1);
  return true;
}

// The directory of an executable named `program` on PATH, or "".
std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream directories(path ? path : "/usr/bin:/bin");
  std::string directory;
  while (std::getline(directories, directory, ':')) {
    const std::string candidate = (directory.empty() ? "." : directory) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

void ensure_directory(const std::string& directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  QNOISE_CHECK(!error && std::filesystem::is_directory(directory), "cannot create output directory '",
               directory, "': ", error ? error.message() : "not a directory");
}

// Verses of each split in Bible order, with their summaries (books, verse counts) filled in.
struct SplitVerses {
  KjvSplitSummary summary;
  std::vector<const Verse*> verses;
};

std::array<SplitVerses, 3> group_by_split(const std::vector<Verse>& verses) {
  std::array<SplitVerses, 3> splits;
  for (int i = 0; i < 3; ++i) splits[i].summary.split = static_cast<KjvSplit>(i);
  for (const Verse& verse : verses) {
    SplitVerses& split = splits[static_cast<int>(kjv_split_of(verse.book))];
    if (split.summary.books.empty() || split.summary.books.back() != verse.book)
      split.summary.books.push_back(verse.book);
    split.verses.push_back(&verse);
    ++split.summary.verses;
  }
  for (const auto& split : splits)
    QNOISE_CHECK(split.summary.verses >= 3, "the ", split_name(split.summary.split), " split holds ",
                 split.summary.verses, " verses; the KJV text given is incomplete");
  return splits;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string joined;
  for (size_t i = 0; i < parts.size(); ++i) joined += (i ? separator : "") + parts[i];
  return joined;
}

std::string readme(const std::string& title, const std::array<SplitVerses, 3>& splits, bool pairs) {
  std::ostringstream text;
  text << title << "\nSource: the King James Bible, Debian package bible-kjv (`bible " << kBibleRange
       << "`), written by `qnoise data`.\nText is tokenised: case kept, punctuation split from words.\n"
       << "Split by whole books:\n";
  for (const auto& split : splits) {
    const auto& s = split.summary;
    text << "\n" << split_name(s.split) << ": " << s.books.size() << " books, " << s.verses << " verses";
    if (pairs) text << ", " << s.pairs << " pairs";
    else text << ", " << s.tokens << " tokens (with one </s> per verse)";
    text << "\n  " << join(s.books, ", ") << "\n";
  }
  return text.str();
}

}  // namespace

std::vector<Verse> parse_bible_output(const std::string& text, const std::string& source) {
  std::vector<Verse> verses;
  std::istringstream lines(text);
  std::string line, book;
  int chapter = 0;
  bool after_blank = true;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      after_blank = true;
      continue;
    }
    Verse verse;
    if (line[0] == ' ') {
      QNOISE_CHECK(parse_verse_start(line, verse.verse, verse.text), source, ":", number,
                   ": expected a verse '  N text', got '", line, "'");
      QNOISE_CHECK(!book.empty(), source, ":", number, ": verse before any 'Book N' chapter heading");
      verse.book = book;
      verse.chapter = chapter;
      verses.push_back(std::move(verse));
    } else if (after_blank) {
      QNOISE_CHECK(parse_heading(line, book, chapter), source, ":", number,
                   ": expected a chapter heading 'Book N', got '", line, "'");
    } else {
      QNOISE_CHECK(!verses.empty(), source, ":", number, ": text before the first verse");
      verses.back().text += " " + line;  // a long verse wrapped onto the next line
    }
    after_blank = false;
  }
  QNOISE_CHECK(!verses.empty(), source, ": no verses found");
  return verses;
}

std::vector<Verse> read_kjv_bible() {
  const std::string program = find_on_path("bible");
  QNOISE_CHECK(!program.empty(), "the program 'bible' is not installed; install the Debian package "
                                 "bible-kjv (apt-get install bible-kjv)");
  const std::string command = program + " " + kBibleRange + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  QNOISE_CHECK(pipe != nullptr, "cannot run '", command, "'");
  std::string output;
  std::array<char, 1 << 16> buffer;
  while (size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  QNOISE_CHECK(status == 0, "'", command, "' failed (status ", status, "); is bible-kjv installed?");
  return parse_bible_output(output, "output of '" + program + " " + kBibleRange + "'");
}

std::vector<std::string> tokenize_kjv(const std::string& text) {
  std::vector<std::string> tokens;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (is_word_char(c)) {
      size_t end = i + 1;  // a word, hyphens inside it included
      while (end < n && (is_word_char(text[end]) ||
                         (text[end] == '-' && end + 1 < n && is_word_char(text[end + 1]))))
        ++end;
      tokens.push_back(text.substr(i, end - i));
      i = end;
      if (i + 1 < n && text[i] == '\'' && text[i + 1] == 's' && (i + 2 == n || !is_word_char(text[i + 2]))) {
        tokens.push_back("'s");
        i += 2;
      }
    } else if (c == '-') {
      size_t end = i;
      while (end < n && text[end] == '-') ++end;
      tokens.push_back(text.substr(i, end - i));
      i = end;
    } else {
      tokens.push_back(std::string(1, c));
      ++i;
    }
  }
  return tokens;
}

std::string tokenized_kjv_line(const std::string& text) { return join(tokenize_kjv(text), " "); }

const char* split_name(KjvSplit split) {
  switch (split) {
    case KjvSplit::Train: return "train";
    case KjvSplit::Valid: return "valid";
    case KjvSplit::Test: return "test";
  }
  return "?";
}

const std::vector<std::string>& kjv_valid_books() {
  static const std::vector<std::string> books = {"Ruth", "Ecclesiastes", "Daniel", "Mark", "Galatians", "James"};
  return books;
}

const std::vector<std::string>& kjv_test_books() {
  static const std::vector<std::string> books = {"Esther", "Proverbs", "Hosea", "Jonah", "Romans", "1 Peter"};
  return books;
}

KjvSplit kjv_split_of(const std::string& book) {
  auto holds = [&](const std::vector<std::string>& books) {
    return std::find(books.begin(), books.end(), book) != books.end();
  };
  if (holds(kjv_valid_books())) return KjvSplit::Valid;
  if (holds(kjv_test_books())) return KjvSplit::Test;
  return KjvSplit::Train;
}

std::vector<KjvSplitSummary> write_kjv_wikitext(const std::vector<Verse>& verses, const std::string& out_dir) {
  auto splits = group_by_split(verses);
  ensure_directory(out_dir);
  for (auto& split : splits) {
    std::string content;
    for (const Verse* verse : split.verses) {
      const auto tokens = tokenize_kjv(verse->text);
      split.summary.tokens += static_cast<int64_t>(tokens.size()) + 1;  // + </s>
      content += join(tokens, " ") + "\n";
    }
    split.summary.path = out_dir + "/wiki." + split_name(split.summary.split) + ".tokens";
    write_file_atomically(split.summary.path, content);
  }
  write_file_atomically(out_dir + "/README.txt",
                   readme("King James Bible, WikiText format: one verse per line.", splits, false));
  return {splits[0].summary, splits[1].summary, splits[2].summary};
}

std::vector<KjvSplitSummary> write_kjv_pairs(const std::vector<Verse>& verses, const std::string& out_dir,
                                             uint64_t seed) {
  auto splits = group_by_split(verses);
  ensure_directory(out_dir);
  // mt19937_64 is fully specified by the standard; the distributions are not, so draws use a
  // plain modulo to give the same files on every platform.
  std::mt19937_64 random(seed);
  for (auto& split : splits) {
    const auto& list = split.verses;
    const uint64_t n = list.size();
    std::vector<std::string> lines(n);
    for (uint64_t i = 0; i < n; ++i) lines[i] = tokenized_kjv_line(list[i]->text);
    std::vector<std::string> rows;
    for (uint64_t i = 0; i + 1 < n; ++i) {
      if (list[i]->book != list[i + 1]->book) continue;  // the next verse starts another book
      uint64_t other = random() % n;
      while (other == i || other == i + 1) other = random() % n;
      rows.push_back(lines[i] + "\t" + lines[i + 1] + "\t1\n");
      rows.push_back(lines[i] + "\t" + lines[other] + "\t0\n");
    }
    for (uint64_t i = rows.size(); i > 1; --i) std::swap(rows[i - 1], rows[random() % i]);
    std::string content = "premise\thypothesis\tlabel\n";
    for (const auto& row : rows) content += row;
    split.summary.pairs = static_cast<int64_t>(rows.size());
    split.summary.path = out_dir + "/" + split_name(split.summary.split) + ".tsv";
    write_file_atomically(split.summary.path, content);
  }
  write_file_atomically(out_dir + "/README.txt",
                   readme("King James Bible next-verse prediction pairs: label 1 = the hypothesis is "
                          "the verse that follows the premise, 0 = a random verse of the same split.",
                          splits, true));
  return {splits[0].summary, splits[1].summary, splits[2].summary};
}

}  // namespace qnoise
