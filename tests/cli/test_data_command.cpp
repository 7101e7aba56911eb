#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>

namespace {

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr together
};

Result run_qnoise(const std::string& arguments) {
  const std::string command = std::string(QNOISE_BINARY) + " " + arguments + " 2>&1 </dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

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
