#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/idx_file.h"

namespace {

using Bytes = std::vector<uint8_t>;

void append_big_endian(Bytes& bytes, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(uint8_t(value >> shift));
}

Bytes idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes bytes;
  append_big_endian(bytes, magic);
  for (uint32_t dim : dims) append_big_endian(bytes, dim);
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

Bytes counting_bytes(size_t count) {
  Bytes data(count);
  for (size_t i = 0; i < count; ++i) data[i] = uint8_t(i * 7 + 3);
  return data;
}

// Writes `bytes` as testing::TempDir()/qnoise_idx_<name>, gzip-compressed when asked.
std::string write_file(const std::string& name, const Bytes& bytes, bool gzip) {
  const std::string path = testing::TempDir() + "qnoise_idx_" + name + (gzip ? ".gz" : "");
  if (gzip) {
    gzFile file = gzopen(path.c_str(), "wb");
    EXPECT_NE(file, nullptr);
    if (!bytes.empty()) EXPECT_EQ(gzwrite(file, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
    gzclose(file);
  } else {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                std::streamsize(bytes.size()));
  }
  return path;
}

// Reading `path` must throw qnoise::Error whose message names the file and contains `fragment`.
template <typename Read>
void expect_error(const std::string& path, const std::string& fragment, Read read) {
  try {
    read(path);
    ADD_FAILURE() << "no error reading " << path;
  } catch (const qnoise::Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << "want '" << fragment << "' in: " << message;
  }
}

void expect_read_error(const std::string& path, const std::string& fragment) {
  expect_error(path, fragment, [](const std::string& p) { qnoise::read_idx_file(p); });
}

torch::Tensor expected_tensor(const Bytes& data, std::vector<int64_t> shape) {
  return torch::tensor(std::vector<int64_t>(data.begin(), data.end())).to(torch::kByte).view(shape);
}

}  // namespace

TEST(IdxFile, ImagesRoundTripExactlyPlainAndGzip) {
  const Bytes data = counting_bytes(2 * 3 * 4);
  const Bytes file = idx_bytes(qnoise::kIdxImagesMagic, {2, 3, 4}, data);
  for (bool gzip : {false, true}) {
    const auto images = qnoise::read_idx_images(write_file("images", file, gzip));
    EXPECT_EQ(images.scalar_type(), torch::kByte);
    EXPECT_TRUE(torch::equal(images, expected_tensor(data, {2, 3, 4}))) << "gzip " << gzip;
  }
}

TEST(IdxFile, LabelsRoundTripExactlyPlainAndGzip) {
  const Bytes labels = {9, 0, 3, 3, 7};
  const Bytes file = idx_bytes(qnoise::kIdxLabelsMagic, {5}, labels);
  for (bool gzip : {false, true}) {
    const auto read = qnoise::read_idx_labels(write_file("labels", file, gzip));
    EXPECT_TRUE(torch::equal(read, expected_tensor(labels, {5}))) << "gzip " << gzip;
  }
}

TEST(IdxFile, AnyNumberOfDimsAndEmptyData) {
  const Bytes data = counting_bytes(2 * 1 * 2 * 3);
  auto read = qnoise::read_idx_file(write_file("4d", idx_bytes(0x0804, {2, 1, 2, 3}, data), false));
  EXPECT_TRUE(torch::equal(read, expected_tensor(data, {2, 1, 2, 3})));
  auto empty = qnoise::read_idx_images(write_file("empty", idx_bytes(0x0803, {0, 28, 28}, {}), true));
  EXPECT_EQ(empty.sizes(), (std::vector<int64_t>{0, 28, 28}));
}

TEST(IdxFile, MissingFileOrDirectoryIsAnError) {
  expect_read_error(testing::TempDir() + "qnoise_idx_no_such_file", "no such file");
  const std::string directory = testing::TempDir() + "qnoise_idx_directory";
  std::filesystem::create_directories(directory);
  expect_read_error(directory, "not a regular file");
}

TEST(IdxFile, WrongMagicIsAnError) {
  const Bytes data = counting_bytes(4);
  expect_read_error(write_file("bad_magic", idx_bytes(0x12340803, {1, 2, 2}, data), false),
                    "bad magic 0x12340803");
  expect_read_error(write_file("float_dtype", idx_bytes(0x0D03, {1, 1, 1}, Bytes(4)), true),
                    "float32");
  expect_read_error(write_file("zero_dims", idx_bytes(0x0800, {}, data), false), "0 dims");
  // A labels file where images are expected: the number of dims is wrong.
  const std::string labels = write_file("not_images", idx_bytes(0x0801, {4}, data), false);
  expect_error(labels, "expected 0x00000803",
               [](const std::string& p) { qnoise::read_idx_images(p); });
  const std::string images = write_file("not_labels", idx_bytes(0x0803, {1, 2, 2}, data), true);
  expect_error(images, "expected 0x00000801",
               [](const std::string& p) { qnoise::read_idx_labels(p); });
}

TEST(IdxFile, TruncationAtEveryLengthIsAnError) {
  const Bytes file = idx_bytes(qnoise::kIdxImagesMagic, {3, 4, 5}, counting_bytes(60));
  for (bool gzip : {false, true}) {
    for (size_t length : {size_t{0}, size_t{2}, size_t{4}, size_t{9}, size_t{16}, size_t{17},
                          size_t{40}, file.size() - 1}) {
      const Bytes truncated(file.begin(), file.begin() + length);
      const std::string path = write_file("truncated_" + std::to_string(length), truncated, gzip);
      expect_read_error(path, "truncated");
    }
  }
}

TEST(IdxFile, TruncatedGzipStreamIsAnError) {
  // Cut the compressed file itself (not the data inside it): the deflate stream ends early.
  const Bytes file = idx_bytes(qnoise::kIdxImagesMagic, {3, 4, 5}, counting_bytes(60));
  const std::string whole = write_file("gzip_whole", file, true);
  std::ifstream in(whole, std::ios::binary);
  const Bytes compressed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t length : {size_t{1}, size_t{12}, compressed.size() / 2, compressed.size() - 4}) {
    const std::string path = write_file("gzip_cut_" + std::to_string(length),
                                        Bytes(compressed.begin(), compressed.begin() + length), false);
    try {
      qnoise::read_idx_file(path);
      ADD_FAILURE() << "no error for a gzip file cut at " << length;
    } catch (const qnoise::Error& error) {
      EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
    }
  }
}

TEST(IdxFile, CorruptGzipDataIsAnError) {
  const Bytes file = idx_bytes(qnoise::kIdxImagesMagic, {10, 10, 10}, counting_bytes(1000));
  const std::string whole = write_file("gzip_to_corrupt", file, true);
  std::ifstream in(whole, std::ios::binary);
  Bytes compressed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  compressed[compressed.size() - 6] ^= 0xFF;  // inside the CRC32 trailer
  const std::string path = write_file("gzip_corrupt", compressed, false);
  EXPECT_THROW(qnoise::read_idx_file(path), qnoise::Error);
}

TEST(IdxFile, TrailingBytesAreAnError) {
  Bytes file = idx_bytes(qnoise::kIdxLabelsMagic, {4}, counting_bytes(4));
  file.push_back(42);
  for (bool gzip : {false, true}) expect_read_error(write_file("trailing", file, gzip), "trailing");
}

TEST(IdxFile, AbsurdDimsAreRefusedBeforeAllocating) {
  const Bytes file = idx_bytes(qnoise::kIdxImagesMagic, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, Bytes(64));
  expect_read_error(write_file("absurd", file, true), "claim more data");
  expect_read_error(write_file("absurd", file, false), "claim more data");
  // Within 64 bits but far beyond the file: plain files report it as truncation.
  const Bytes big = idx_bytes(qnoise::kIdxImagesMagic, {60000, 4096, 4096}, Bytes(64));
  expect_read_error(write_file("big", big, false), "truncated");
  expect_read_error(write_file("big", big, true), "claim more data");
}
