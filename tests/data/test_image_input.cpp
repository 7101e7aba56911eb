// PGM and IDX images from outside the data sets, and resizing them to a model's input size.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "qnoise/error.h"
#include "qnoise/image_input.h"

namespace {

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "qnoise_image_input_" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string pixels(std::initializer_list<int> values) {
  std::string bytes;
  for (int v : values) bytes.push_back(static_cast<char>(v));
  return bytes;
}

void expect_error(const std::string& path, const std::string& part) {
  try {
    qnoise::read_images(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ImageInput, ReadsABinaryPgmWithCommentsAndScalesItsMaxval) {
  const auto path = write_file("a.pgm", "P5\n# made by a test\n3 2\n# another\n255\n" + pixels({0, 1, 2, 253, 254, 255}));
  const auto image = qnoise::read_pgm(path);
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(image[1][2].item<int>(), 255);
  EXPECT_EQ(image[0][1].item<int>(), 1);
  EXPECT_EQ(qnoise::read_images(path).sizes(), (std::vector<int64_t>{1, 2, 3}));

  const auto four_bits = qnoise::read_pgm(write_file("b.pgm", "P5 2 1 15 " + pixels({15, 5})));
  EXPECT_EQ(four_bits[0][0].item<int>(), 255);
  EXPECT_EQ(four_bits[0][1].item<int>(), 85);
}

TEST(ImageInput, BadPgmFilesAreErrorsNamingTheProblem) {
  expect_error(write_file("bad1.pgm", "P5\nwide 2\n255\n" + pixels({0, 0})), "width");
  expect_error(write_file("bad2.pgm", "P5\n2 2\n255\n" + pixels({0, 0, 0})), "truncated");
  expect_error(write_file("bad3.pgm", "P5\n1 1\n255\n" + pixels({0, 0})), "after its image");
  expect_error(write_file("bad4.pgm", "P5\n1 1\n65535\n" + pixels({0, 0})), "16-bit");
  expect_error(write_file("bad5.pgm", "P2\n1 1\n255\n0\n"), "ASCII PGM");
  expect_error(write_file("bad6.pgm", "P5\n0 1\n255\n"), "empty");
  expect_error(write_file("bad7.png", "\x89PNG\r\n\x1a\n...."), "PNG");
  expect_error(write_file("bad8.bin", "hello world"), "not an image file qnoise reads");
  expect_error(::testing::TempDir() + "qnoise_no_such_image.pgm", "cannot open");
}

TEST(ImageInput, ResizingKeepsTheRightSizeAndAveragesWhenShrinking) {
  const auto image = torch::randint(0, 256, {2, 28, 28}, torch::kLong).to(torch::kByte);
  EXPECT_TRUE(torch::equal(qnoise::resize_images(image, 28, 28), image));
  const auto flat = torch::full({1, 56, 40}, 77, torch::kByte);
  const auto resized = qnoise::resize_images(flat, 28, 28);
  ASSERT_EQ(resized.sizes(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_TRUE(torch::equal(resized, torch::full({1, 28, 28}, 77, torch::kByte)));
  // A checkerboard of 0/254 halved is a uniform grey (antialiased), not aliased stripes.
  const auto board = (torch::arange(56).view({56, 1}) + torch::arange(56).view({1, 56})).remainder(2).mul(254);
  const auto grey = qnoise::resize_images(board.to(torch::kByte).unsqueeze(0), 28, 28).to(torch::kInt);
  EXPECT_LE((grey.slice(1, 2, 26).slice(2, 2, 26) - 127).abs().max().item<int>(), 1);
  EXPECT_THROW(qnoise::resize_images(torch::zeros({28, 28}, torch::kByte), 28, 28), qnoise::Error);
}

// Found by fuzzing (fuzz/image_fuzzer.cpp): IDX images with no rows or columns reached libtorch's
// resampling, whose own error (c10::Error) escaped instead of a qnoise::Error naming the file; and
// a 16-byte file of no images of 2105429 x 421535776 pixels made resizing allocate 3.4 GB.
TEST(ImageInput, EmptyIdxImagesAreErrors) {
  expect_error(write_file("no_rows.idx", pixels({0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4})), "empty");
  expect_error(write_file("no_images.idx", pixels({0, 0, 8, 3, 0, 0, 0, 0, 0, 0x20, 0x20, 0x55, 0x19, 0x20, 0x20, 0x20})),
               "holds no images");
  EXPECT_THROW(qnoise::resize_images(torch::zeros({1, 3, 0}, torch::kByte), 28, 28), qnoise::Error);
  const auto none = qnoise::resize_images(torch::empty({0, 2105429, 421535776}, torch::kByte), 28, 28);
  EXPECT_EQ(none.sizes(), (std::vector<int64_t>{0, 28, 28}));
}
