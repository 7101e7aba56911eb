#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qnoise/error.h"
#include "qnoise/safetensors.h"

namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name; }

std::string read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

qnoise::SafetensorsContents sample_contents() {
  qnoise::SafetensorsContents contents;
  contents.metadata = {{"format", "qnz"}, {"config", "{\"a\": 1}"}};
  contents.tensors.push_back({"codes", "U8", torch::arange(0, 200, torch::kInt).to(torch::kByte).view({10, 20})});
  contents.tensors.push_back({"wide_codes", "U16", torch::tensor({0, 1, -1, 1234}, torch::kShort)});
  contents.tensors.push_back({"centroids", "F16", torch::randn({4, 8}).to(torch::kHalf)});
  contents.tensors.push_back({"scale", "F32", torch::tensor({0.5f, 0.25f, 1e-3f})});
  contents.tensors.push_back({"empty", "F32", torch::empty({0, 3})});
  contents.tensors.push_back({"signed", "I8", torch::tensor({-128, 0, 127}, torch::kChar)});
  return contents;
}

}  // namespace

TEST(Safetensors, RoundTripKeepsNamesTypesShapesValuesAndMetadata) {
  const auto path = temp_path("round_trip.safetensors");
  const auto contents = sample_contents();
  qnoise::write_safetensors(path, contents);
  EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(path)), qnoise::safetensors_file_size(contents));
  const auto back = qnoise::read_safetensors(path);
  EXPECT_EQ(back.metadata, contents.metadata);
  ASSERT_EQ(back.tensors.size(), contents.tensors.size());
  for (const auto& entry : contents.tensors) {
    const auto* read = back.find(entry.name);
    ASSERT_NE(read, nullptr) << entry.name;
    EXPECT_EQ(read->dtype, entry.dtype);
    EXPECT_TRUE(torch::equal(read->tensor, entry.tensor)) << entry.name;
  }
}

TEST(Safetensors, EveryTensorStartsAlignedToItsElementSize) {
  // Odd-length byte tensors before wider ones, in the caller's order: the writer puts the data of
  // wider types first, so every offset is a multiple of its element size (8 after the header).
  qnoise::SafetensorsContents contents;
  contents.tensors.push_back({"odd_bytes", "U8", torch::ones({3}, torch::kByte)});
  contents.tensors.push_back({"halves", "F16", torch::ones({3}, torch::kHalf)});
  contents.tensors.push_back({"floats", "F32", torch::ones({3})});
  contents.tensors.push_back({"more_bytes", "I8", torch::ones({5}, torch::kChar)});
  contents.tensors.push_back({"longs", "I64", torch::ones({1}, torch::kLong)});
  contents.tensors.push_back({"ints", "I32", torch::ones({1}, torch::kInt)});
  const auto path = temp_path("aligned.safetensors");
  qnoise::write_safetensors(path, contents);
  const std::string bytes = read_bytes(path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + header_size) % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.substr(8, header_size));
  for (const auto& entry : contents.tensors) {
    const auto begin = header[entry.name]["data_offsets"][0].get<uint64_t>();
    EXPECT_EQ(begin % static_cast<uint64_t>(qnoise::element_size_of(entry.dtype)), 0u) << entry.name << " at " << begin;
  }
  const auto back = qnoise::read_safetensors(path);
  for (const auto& entry : contents.tensors) EXPECT_TRUE(torch::equal(back.at(entry.name).tensor, entry.tensor));
}

TEST(Safetensors, LayoutIsTheReferenceOne) {
  qnoise::SafetensorsContents contents;
  contents.tensors.push_back({"x", "F32", torch::tensor({1.0f, 2.0f})});
  const auto path = temp_path("layout.safetensors");
  qnoise::write_safetensors(path, contents);
  const std::string bytes = read_bytes(path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(header_size % 8, 0u);  // data aligned to 8 bytes
  const std::string header = bytes.substr(8, header_size);
  EXPECT_EQ(header.rfind("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0), 0u) << header;
  float values[2];
  std::memcpy(values, bytes.data() + 8 + header_size, 8);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], 2.0f);
  EXPECT_EQ(bytes.size(), 8 + header_size + 8);
}

TEST(Safetensors, WriterRejectsDuplicatesAndMismatchedTypes) {
  qnoise::SafetensorsContents contents;
  contents.tensors.push_back({"x", "F32", torch::zeros({2})});
  contents.tensors.push_back({"x", "F32", torch::zeros({2})});
  EXPECT_THROW(qnoise::write_safetensors(temp_path("dup.safetensors"), contents), qnoise::Error);
  contents.tensors.pop_back();
  contents.tensors.push_back({"y", "F16", torch::zeros({2})});  // float32 data declared F16
  EXPECT_THROW(qnoise::write_safetensors(temp_path("mismatch.safetensors"), contents), qnoise::Error);
  EXPECT_FALSE(std::filesystem::exists(temp_path("mismatch.safetensors")));
}

// Found by UBSan: parsing from memory passed an empty tensor's null data pointer to memcpy.
TEST(Safetensors, EmptyTensorsParseFromMemory) {
  const std::string header = R"({"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                             R"("empty":{"dtype":"F32","shape":[0,3],"data_offsets":[2,2]}})";
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xFF));
  bytes += header + "\x07\x09";
  const auto parsed = qnoise::parse_safetensors(bytes, "empty.safetensors");
  ASSERT_EQ(parsed.tensors.size(), 2u);
  EXPECT_EQ(parsed.at("empty").tensor.sizes(), torch::IntArrayRef({0, 3}));
  EXPECT_EQ(parsed.at("x").tensor[1].item<int>(), 9);
}

TEST(Safetensors, EveryTruncationIsAnErrorNamingTheFile) {
  const auto path = temp_path("whole.safetensors");
  qnoise::write_safetensors(path, sample_contents());
  const std::string bytes = read_bytes(path);
  for (size_t length = 0; length < bytes.size(); ++length) {
    try {
      qnoise::parse_safetensors(bytes.substr(0, length), "cut.qnz");
      ADD_FAILURE() << "a file cut to " << length << " of " << bytes.size() << " bytes was accepted";
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find("'cut.qnz'"), std::string::npos) << e.what();
    }
  }
}

TEST(Safetensors, CorruptingAnyHeaderByteIsCaughtOrHarmless) {
  const auto path = temp_path("corrupt.safetensors");
  const auto contents = sample_contents();
  qnoise::write_safetensors(path, contents);
  const std::string bytes = read_bytes(path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  int rejected = 0;
  // Every byte of the length and header, each replaced by a few values: the parser must either
  // reject the file or return tensors whose sizes match their bytes (e.g. a changed metadata
  // letter) -- never crash or read outside the buffer.
  for (size_t i = 0; i < 8 + header_size; ++i) {
    for (unsigned char value : {0x00, 0x22, 0x5D, 0x7B, 0x31, 0xFF}) {
      std::string corrupt = bytes;
      if (static_cast<unsigned char>(corrupt[i]) == value) continue;
      corrupt[i] = static_cast<char>(value);
      try {
        const auto parsed = qnoise::parse_safetensors(corrupt, "corrupt.qnz");
        for (const auto& entry : parsed.tensors)
          EXPECT_EQ(entry.tensor.numel() * qnoise::element_size_of(entry.dtype) <=
                        static_cast<int64_t>(corrupt.size()), true);
      } catch (const qnoise::Error& e) {
        ++rejected;
        EXPECT_NE(std::string(e.what()).find("corrupt.qnz"), std::string::npos);
      }
    }
  }
  EXPECT_GT(rejected, static_cast<int>(header_size));  // most corruptions are caught
}

TEST(Safetensors, SpecificViolationsAreNamed) {
  auto file_with_header = [](const std::string& header, size_t data_bytes) {
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xFF));
    return bytes + header + std::string(data_bytes, '\0');
  };
  auto error_of = [](const std::string& bytes) -> std::string {
    try {
      qnoise::parse_safetensors(bytes, "f");
    } catch (const qnoise::Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of(file_with_header(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8)).find("unsupported dtype"), std::string::npos);
  EXPECT_NE(error_of(file_with_header(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)).find("needs 12"), std::string::npos);
  EXPECT_NE(error_of(file_with_header(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12)).find("after the last tensor"), std::string::npos);
  EXPECT_NE(error_of(file_with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8)).find("gap or overlap"), std::string::npos);
  EXPECT_NE(error_of(file_with_header(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("bad shape"), std::string::npos);
  EXPECT_NE(error_of(file_with_header(R"({"__metadata__":{"a":1}})", 0)).find("not a string"), std::string::npos);
  EXPECT_NE(error_of(file_with_header(R"([1,2])", 0)).find("'{'"), std::string::npos);
  EXPECT_NE(error_of(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10)).find("100 MB"), std::string::npos);
  EXPECT_EQ(error_of(file_with_header(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8)), "");
  EXPECT_THROW(qnoise::read_safetensors("/nonexistent/model.qnz"), qnoise::Error);
}
