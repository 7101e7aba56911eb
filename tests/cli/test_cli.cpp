#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/run_qnoise.h"

using qnoise::testing::contains;
using qnoise::testing::run_qnoise;

TEST(Cli, HelpAndVersion) {
  auto help = run_qnoise("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(contains(help.output, "demo")) << help.output;
  auto version = run_qnoise("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(contains(version.output, "qnoise 0.")) << version.output;
  auto demo_help = run_qnoise("demo layer --help");
  EXPECT_EQ(demo_help.exit_code, 0);
  EXPECT_TRUE(contains(demo_help.output, "--block-size")) << demo_help.output;
}

TEST(Cli, UnknownCommandsAndOptionsFailWithAMessage) {
  auto unknown_option = run_qnoise("demo layer --no-such-option");
  EXPECT_NE(unknown_option.exit_code, 0);
  EXPECT_TRUE(contains(unknown_option.output, "--no-such-option")) << unknown_option.output;
  auto unknown_command = run_qnoise("frobnicate");
  EXPECT_NE(unknown_command.exit_code, 0);
  auto nothing = run_qnoise("");
  EXPECT_NE(nothing.exit_code, 0);
}

TEST(Cli, DemoPrintsEverySchemeWithItsCompressionRatio) {
  auto demo = run_qnoise("--threads 1 demo layer --rows 64 --cols 64 --centroids 16 --iterations 3");
  ASSERT_EQ(demo.exit_code, 0) << demo.output;
  for (const char* scheme : {"float32", "int8 affine", "int4 affine", "PQ K=16 block 8", "PQ K=16 block 4"})
    EXPECT_TRUE(contains(demo.output, scheme)) << scheme << "\n" << demo.output;
  // int8 of 64x64: 4096 code bytes + 64 channels x (fp32 scale + 1-byte zero point) = 4416 bytes:
  // 8.625 bits per weight, 16384 / 4416 = 3.7x smaller than float.
  EXPECT_TRUE(contains(demo.output, "8.625")) << demo.output;
  EXPECT_TRUE(contains(demo.output, "3.7x")) << demo.output;
}

TEST(Cli, DemoRejectsABlockSizeThatDoesNotDivideTheLayer) {
  auto demo = run_qnoise("demo layer --rows 16 --cols 30 --block-size 8");
  EXPECT_EQ(demo.exit_code, 1);
  EXPECT_TRUE(contains(demo.output, "block_size 8 does not divide in_features 30")) << demo.output;
}

TEST(Cli, DemoRejectsAMissingOrCorruptWeightFile) {
  auto missing = run_qnoise("demo layer --weight /nonexistent/weight.pt");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_TRUE(contains(missing.output, "/nonexistent/weight.pt")) << missing.output;
  const std::string corrupt = testing::TempDir() + "qnoise_corrupt_weight.pt";
  FILE* file = std::fopen(corrupt.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  std::fputs("this is not a torch file", file);
  std::fclose(file);
  auto bad = run_qnoise("demo layer --weight " + corrupt);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(contains(bad.output, "is not a tensor saved with torch.save")) << bad.output;
}

TEST(Cli, QuickDemoTrainsAndReportsAccuracy) {
  const auto out = ::testing::TempDir() + "demo_quick.pt";
  auto demo = run_qnoise("--threads 2 demo --quick --epochs 1 --out " + out);
  ASSERT_EQ(demo.exit_code, 0) << demo.output;
  EXPECT_TRUE(contains(demo.output, "test acc.")) << demo.output;
  EXPECT_TRUE(contains(demo.output, "pq p=0.10")) << demo.output;
  EXPECT_TRUE(std::filesystem::exists(out));
}
