// `qnoise data`: prepare data sets on disk (the KJV language-modelling corpus and its next-verse
// sentence-pair task) in the formats the training commands read.
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/table.h"
#include "qnoise/kjv_corpus.h"
#include "qnoise/text_corpus.h"

namespace qnoise::cli {

namespace {

struct DataOptions {
  std::string out_dir;
  uint64_t seed = 0;
};

void run_kjv(const DataOptions& options) {
  const auto verses = read_kjv_bible();
  const auto splits = write_kjv_wikitext(verses, options.out_dir);
  Table table({"split", "file", "books", "verses", "tokens"});
  for (const auto& split : splits)
    table.add_row({split_name(split.split), split.path, std::to_string(split.books.size()),
                   std::to_string(split.verses), std::to_string(split.tokens)});
  std::unordered_map<std::string, int64_t> counts;
  count_tokens(splits[0].path, counts);
  const Vocabulary vocabulary = Vocabulary::from_counts(counts);
  std::cout << "Wrote the King James Bible in WikiText format (" << verses.size() << " verses):\n\n"
            << table.render() << "\nTokens include one </s> per verse. Train vocabulary: "
            << vocabulary.size() << " tokens (with <pad>, </s>, <unk>).\nBooks of each split: "
            << options.out_dir << "/README.txt\n";
}

void run_kjv_pairs(const DataOptions& options) {
  const auto verses = read_kjv_bible();
  const auto splits = write_kjv_pairs(verses, options.out_dir, options.seed);
  Table table({"split", "file", "books", "verses", "pairs"});
  for (const auto& split : splits)
    table.add_row({split_name(split.split), split.path, std::to_string(split.books.size()),
                   std::to_string(split.verses), std::to_string(split.pairs)});
  std::cout << "Wrote KJV next-verse pairs (seed " << options.seed << "; half label 1 = next verse, "
            << "half label 0 = a random verse of the same split):\n\n"
            << table.render() << "\nBooks of each split: " << options.out_dir << "/README.txt\n";
}

}  // namespace

Command add_data_command(CLI::App& parent) {
  auto options = std::make_shared<DataOptions>();
  CLI::App* app = parent.add_subcommand("data", "Prepare data sets (needs the Debian package bible-kjv)");
  app->require_subcommand(1);
  CLI::App* kjv = app->add_subcommand(
      "kjv", "Write the King James Bible as WikiText-format wiki.{train,valid,test}.tokens");
  kjv->add_option("--out", options->out_dir, "Output directory (created if missing)")->required();
  CLI::App* pairs = app->add_subcommand(
      "kjv-pairs", "Write KJV next-verse prediction pairs as {train,valid,test}.tsv");
  pairs->add_option("--out", options->out_dir, "Output directory (created if missing)")->required();
  pairs->add_option("--seed", options->seed, "Seed for the negative verses and the row order");
  return {app, [options, kjv, pairs] {
            if (kjv->parsed()) run_kjv(*options);
            if (pairs->parsed()) run_kjv_pairs(*options);
          }};
}

}  // namespace qnoise::cli
