#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cli/run_qnoise.h"

using qnoise::testing::contains;
using qnoise::testing::run_qnoise;

namespace {

bool bible_installed() { return std::system("command -v bible >/dev/null 2>&1") == 0; }

}  // namespace

TEST(DataCommand, KjvWritesWikiTextFilesAndReportsThem) {
  if (!bible_installed()) GTEST_SKIP() << "the Debian package bible-kjv is not installed";
  const std::string out = testing::TempDir() + "qnoise_cli_kjv";
  std::filesystem::remove_all(out);
  auto result = run_qnoise("data kjv --out " + out);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* name : {"wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens", "README.txt"})
    EXPECT_TRUE(std::filesystem::is_regular_file(out + "/" + name)) << name;
  EXPECT_TRUE(contains(result.output, "31102 verses")) << result.output;
  EXPECT_TRUE(contains(result.output, "vocabulary")) << result.output;
}

TEST(DataCommand, KjvPairsWritesTsvFiles) {
  if (!bible_installed()) GTEST_SKIP() << "the Debian package bible-kjv is not installed";
  const std::string out = testing::TempDir() + "qnoise_cli_kjv_pairs";
  std::filesystem::remove_all(out);
  auto result = run_qnoise("data kjv-pairs --out " + out + " --seed 5");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* name : {"train.tsv", "valid.tsv", "test.tsv", "README.txt"})
    EXPECT_TRUE(std::filesystem::is_regular_file(out + "/" + name)) << name;
  std::ifstream train(out + "/train.tsv");
  std::string header;
  std::getline(train, header);
  EXPECT_EQ(header, "premise\thypothesis\tlabel");
}

TEST(DataCommand, BadOutputDirectoryFailsWithAMessage) {
  if (!bible_installed()) GTEST_SKIP() << "the Debian package bible-kjv is not installed";
  const std::string file = testing::TempDir() + "qnoise_cli_regular_file";
  std::ofstream(file) << "x";
  auto result = run_qnoise("data kjv --out " + file + "/out");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.output, "cannot create output directory '" + file + "/out'")) << result.output;
  auto missing = run_qnoise("data kjv");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_TRUE(contains(missing.output, "--out")) << missing.output;
}
