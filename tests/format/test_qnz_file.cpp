#include <gtest/gtest.h>
#include <torch/torch.h>

#include <zlib.h>

#include <filesystem>
#include <functional>
#include <limits>
#include <fstream>
#include <sstream>

#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/qnz_file.h"
#include "qnoise/safetensors.h"

namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name; }

qnoise::CompressedModel sample_model() {
  torch::manual_seed(0);
  qnoise::CompressedModel model;
  model.task = {{"task", "image"}, {"model", {{"arch", "small-cnn"}}}};
  model.artifacts = {{"class_names", {"a", "b"}}};
  model.plan = {{"scheme", "mixed"}};
  const auto layout = qnoise::BlockLayout::linear({32, 64}, 8);
  qnoise::ProductQuantizer pq(8, qnoise::ProductQuantizerOptions().set_n_centroids(16).set_n_iterations(3));
  const auto blocks = layout.to_blocks(torch::randn({32, 64}));
  pq.train(blocks);
  model.tensors.emplace_back("fc.weight", qnoise::compress_pq(layout, pq.codebook(), pq.compute_codes(blocks)));
  model.tensors.emplace_back("fc4.weight", qnoise::compress_pq(layout, pq.codebook(), pq.compute_codes(blocks), 4));
  model.tensors.emplace_back("fc.bias", qnoise::compress_float(torch::randn({32}), qnoise::WeightScheme::Float32));
  model.tensors.emplace_back("conv.weight", qnoise::compress_scalar(torch::randn({8, 4, 3, 3}), 4));
  model.tensors.emplace_back("out.weight", qnoise::compress_scalar(torch::randn({10, 32}), 8));
  model.tensors.emplace_back("norm.weight", qnoise::compress_float(torch::randn({32}), qnoise::WeightScheme::Float16));
  return model;
}

}  // namespace

TEST(QnzFile, RoundTripDecodesToTheSameWeightsAndTheFileIsItsStoredSize) {
  const auto path = temp_path("model.qnz");
  const auto model = sample_model();
  qnoise::write_qnz(path, model);
  const auto back = qnoise::read_qnz(path);
  EXPECT_EQ(back.task, model.task);
  EXPECT_EQ(back.artifacts, model.artifacts);
  ASSERT_EQ(back.tensors.size(), model.tensors.size());
  for (const auto& [name, weight] : model.tensors) {
    const auto* read = back.find(name);
    ASSERT_NE(read, nullptr) << name;
    EXPECT_EQ(read->scheme, weight.scheme);
    EXPECT_EQ(read->centroid_bits, weight.centroid_bits);
    EXPECT_TRUE(torch::equal(read->decode(), weight.decode())) << name;
  }
  // Everything but the JSON header is tensor bytes: the file is the compressed size plus metadata.
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
  EXPECT_GE(file_bytes, model.stored_bytes());
  EXPECT_LE(file_bytes, model.stored_bytes() + 2048);
}

TEST(QnzFile, EveryTruncationIsACleanError) {
  const auto path = temp_path("truncate.qnz");
  qnoise::write_qnz(path, sample_model());
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  const auto cut = temp_path("cut.qnz");
  for (size_t length = 0; length < bytes.size(); length += 7) {
    std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(length));
    EXPECT_THROW(qnoise::read_qnz(cut), qnoise::Error) << length;
  }
}

TEST(QnzFile, CorruptCodesAndForeignFilesAreRejected) {
  auto model = sample_model();
  // A PQ code >= K cannot be written ...
  auto bad = model;
  bad.tensors[0].second.codes = bad.tensors[0].second.codes.clone();  // tensors are shared on copy
  bad.tensors[0].second.codes[0] = 200;
  EXPECT_THROW(qnoise::write_qnz(temp_path("bad.qnz"), bad), qnoise::Error);
  // ... and if a file holds one, reading names the tensor.
  const auto path = temp_path("codes.qnz");
  qnoise::write_qnz(path, model);
  std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
  std::ostringstream buffer;
  buffer << file.rdbuf();
  std::string bytes = buffer.str();
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<unsigned char>(bytes[i]);
  const auto header_text = bytes.substr(8, header);
  const auto begin = nlohmann::json::parse(header_text)["fc.weight.codes"]["data_offsets"][0].get<uint64_t>();
  bytes[8 + header + begin] = static_cast<char>(16);  // K = 16
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  try {
    qnoise::read_qnz(path);
    FAIL();
  } catch (const qnoise::Error& e) {  // the tensor's checksum no longer matches
    EXPECT_NE(std::string(e.what()).find("tensor 'fc.weight.codes' does not match its checksum"), std::string::npos)
        << e.what();
  }
  // A safetensors file without our metadata.
  qnoise::SafetensorsContents plain;
  plain.tensors.push_back({"x", "F32", torch::zeros({2})});
  qnoise::write_safetensors(temp_path("plain.safetensors"), plain);
  EXPECT_THROW(qnoise::read_qnz(temp_path("plain.safetensors")), qnoise::Error);
}

TEST(QnzFile, EveryCorruptedByteIsACleanErrorOrAValidModel) {
  // Every byte in turn is replaced and the file read back: nothing may crash, hang or return parts
  // that do not fit, and every changed tensor byte fails its tensor's checksum.
  const auto path = temp_path("flip.qnz");
  qnoise::write_qnz(path, sample_model());
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto flipped = temp_path("flipped.qnz");
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<unsigned char>(bytes[i]);
  int rejected = 0, data_rejected = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string copy = bytes;
    copy[i] = static_cast<char>(copy[i] ^ 0x5A);
    std::ofstream(flipped, std::ios::binary | std::ios::trunc) << copy;
    try {
      const auto model = qnoise::read_qnz(flipped);
      for (const auto& [name, weight] : model.tensors) weight.decode();  // validated parts decode
    } catch (const qnoise::Error&) {
      ++rejected;
      data_rejected += i >= 8 + header;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(data_rejected, static_cast<int>(bytes.size() - 8 - header));
}

TEST(QnzFile, NonFiniteStoredFloatsAndImpossibleShapesAreRefused) {
  auto model = sample_model();
  model.tensors.back().second.values = model.tensors.back().second.values.clone();
  model.tensors.back().second.values[3] = std::numeric_limits<float>::quiet_NaN();
  const auto path = temp_path("nan.qnz");
  qnoise::write_qnz(path, model);
  try {
    qnoise::read_qnz(path);
    FAIL();
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'norm.weight' holds NaN or infinite values"), std::string::npos)
        << e.what();
  }
  // A shape whose product wraps around in 64 bits.
  qnoise::CompressedWeight huge = qnoise::compress_float(torch::zeros({1}), qnoise::WeightScheme::Float32);
  huge.shape = {1, 274177, 67280421310721};
  EXPECT_THROW(huge.validate(), qnoise::Error);
  huge.shape = {4, -1};
  EXPECT_THROW(huge.validate(), qnoise::Error);
}

// Found by UBSan on the fuzz targets: nlohmann casts a float to an integer type, undefined beyond
// the type's range, and descriptions took shape, block_size, centroid_bits and centroid_zero_point
// that way (and centroid_scale from double to float).
TEST(QnzFile, DescriptionsNumbersMustFitTheirTypes) {
  const auto no_parts = [](const std::string&, const std::string&) -> at::Tensor {
    ADD_FAILURE() << "parts read for a bad description";
    return {};
  };
  const nlohmann::json pq = {{"scheme", "pq"}, {"shape", {32, 64}}, {"layer_kind", "Linear"}, {"block_size", 8},
                             {"centroid_bits", 8}, {"centroid_scale", 0.5}, {"centroid_zero_point", 3}};
  std::vector<nlohmann::json> bad = {{{"scheme", "int8"}, {"shape", {8e300, 4}}}, {{"scheme", "int8"}, {"shape", {8.5, 4}}}};
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"block_size", 1e300}, {"centroid_bits", 1e300}, {"centroid_zero_point", 1e300}, {"centroid_scale", 1e300}}) {
    bad.push_back(pq);
    bad.back()[key] = value;
  }
  for (const auto& d : bad) EXPECT_THROW(qnoise::weight_from_description(d, no_parts), qnoise::Error) << d.dump();
}

TEST(QnzFile, ManyTensorsAreFoundByName) {
  qnoise::CompressedModel model;
  for (int i = 0; i < 20000; ++i)
    model.tensors.emplace_back("t" + std::to_string(i), qnoise::compress_float(torch::zeros({1}), qnoise::WeightScheme::Float32));
  for (int i = 0; i < 20000; i += 997) EXPECT_EQ(model.find("t" + std::to_string(i)), &model.tensors[i].second);
  EXPECT_EQ(model.find("missing"), nullptr);
  model.tensors.emplace_back("late", qnoise::compress_float(torch::zeros({1}), qnoise::WeightScheme::Float32));
  EXPECT_EQ(model.find("late"), &model.tensors.back().second);  // the index follows additions
}

namespace {

// A vocabulary-sized text artifact: packed into the file deflated.
std::string long_vocabulary() {
  std::string text = "<pad> 0\n</s> 10\n<unk> 0\n";
  for (int i = 0; i < 3000; ++i) text += "word" + std::to_string(i) + " " + std::to_string(5000 - i) + "\n";
  return text;
}

// Rewrites a file with its contents changed by `edit`, with valid checksums, so that what is tested
// is the reader's check of the edited part, not the checksum.
void rewrite_with_checksums(const std::string& path, const std::function<void(qnoise::SafetensorsContents&)>& edit) {
  auto contents = qnoise::read_safetensors(path);
  edit(contents);
  nlohmann::json checksums = nlohmann::json::object();
  for (const auto& entry : contents.tensors) {
    const auto bytes = entry.tensor.contiguous();
    checksums[entry.name] = static_cast<uint64_t>(
        crc32(crc32(0L, Z_NULL, 0), static_cast<const Bytef*>(bytes.data_ptr()), bytes.numel() * bytes.element_size()));
  }
  contents.metadata["crc32"] = checksums.dump();
  qnoise::write_safetensors(path, contents);
}

}  // namespace

TEST(QnzFile, LongTextArtifactsAreStoredDeflatedAndReadBackExactly) {
  auto model = sample_model();
  model.artifacts["vocabulary"] = long_vocabulary();
  const auto path = temp_path("packed_vocabulary.qnz");
  qnoise::write_qnz(path, model);
  EXPECT_EQ(qnoise::read_qnz(path).artifacts, model.artifacts);

  const auto contents = qnoise::read_safetensors(path);
  EXPECT_EQ(contents.metadata.at("format_version"), "2");
  EXPECT_EQ(contents.at("__artifacts__.vocabulary").dtype, "U8");
  EXPECT_FALSE(nlohmann::json::parse(contents.metadata.at("artifacts")).contains("vocabulary"));
  EXPECT_EQ(nlohmann::json::parse(contents.metadata.at("packed_artifacts"))["vocabulary"]["bytes"],
            long_vocabulary().size());
  // Deflated, the text takes a fraction of its size; qnz_artifact_bytes reports what the file holds.
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
  const auto text_bytes = static_cast<int64_t>(long_vocabulary().size());
  EXPECT_LT(file_bytes, model.stored_bytes() + 4096 + text_bytes / 2) << file_bytes;
  EXPECT_LT(qnoise::qnz_artifact_bytes(model.artifacts), text_bytes / 2);
  EXPECT_GT(qnoise::qnz_artifact_bytes(model.artifacts), 1000);
  // Short artifacts stay in the JSON.
  EXPECT_EQ(qnoise::qnz_artifact_bytes(sample_model().artifacts),
            static_cast<int64_t>(sample_model().artifacts.dump().size()));
}

TEST(QnzFile, PackedArtifactsThatLieAreCleanErrors) {
  auto model = sample_model();
  model.artifacts["vocabulary"] = long_vocabulary();
  const auto original = temp_path("packed_source.qnz");
  qnoise::write_qnz(original, model);
  const auto size = long_vocabulary().size();
  auto set_packed = [](const std::string& json) {
    return [json](qnoise::SafetensorsContents& c) { c.metadata["packed_artifacts"] = json; };
  };
  const std::vector<std::pair<std::function<void(qnoise::SafetensorsContents&)>, std::string>> cases = {
      {set_packed(R"({"vocabulary": {"bytes": 1000000000000, "encoding": "zlib"}})"), "impossible from"},
      {set_packed(R"({"vocabulary": {"bytes": )" + std::to_string(size + 1) + R"(, "encoding": "zlib"}})"),
       "does not inflate to its declared"},
      {set_packed(R"({"vocabulary": {"bytes": 10, "encoding": "zlib"}})"), "does not inflate to its declared"},
      {set_packed(R"({"vocabulary": {"bytes": 10, "encoding": "gzip"}})"), "has a bad description"},
      {set_packed(R"({"labels": {"bytes": 10, "encoding": "zlib"}})"), "lacks tensor '__artifacts__.labels'"},
      {[](qnoise::SafetensorsContents& c) {
         for (auto& entry : c.tensors) {
           if (entry.name != "__artifacts__.vocabulary") continue;
           entry.tensor = entry.tensor.clone();
           entry.tensor.narrow(0, 0, 16).fill_(7);
         }
       },
       "does not inflate"},
      {[](qnoise::SafetensorsContents& c) {
         c.metadata["artifacts"] = R"({"class_names": ["a", "b"], "vocabulary": "x 1"})";
       },
       "both packed and in __metadata__ 'artifacts'"},
      {[](qnoise::SafetensorsContents& c) { c.metadata.erase("packed_artifacts"); },
       "'__artifacts__.vocabulary' is U8 but __metadata__ 'tensors' does not describe it"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto path = temp_path("packed_lie_" + std::to_string(i) + ".qnz");
    std::filesystem::copy_file(original, path, std::filesystem::copy_options::overwrite_existing);
    rewrite_with_checksums(path, cases[i].first);
    try {
      qnoise::read_qnz(path);
      ADD_FAILURE() << "case " << i << ": read without error";
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find(cases[i].second), std::string::npos) << "case " << i << ": " << e.what();
    }
  }
}

// Found by the qnz fuzz target: a float tensor named like a described (quantized) weight read as a
// second weight of that name, and lookups by name saw only one of them.
TEST(QnzFile, AWeightNameIsStoredOnce) {
  auto model = sample_model();
  const auto path = temp_path("shadowed.qnz");
  qnoise::write_qnz(path, model);
  rewrite_with_checksums(path, [](qnoise::SafetensorsContents& c) {
    for (auto& entry : c.tensors)
      if (entry.name == "fc.bias") entry.name = "fc.weight";  // fc.weight is PQ: fc.weight.codes, .centroids
  });
  try {
    qnoise::read_qnz(path);
    FAIL() << "read a file with two weights named fc.weight";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'fc.weight' is stored on its own and also described"),
              std::string::npos)
        << e.what();
  }
  model.tensors.emplace_back("fc.bias", qnoise::compress_float(torch::zeros({32}), qnoise::WeightScheme::Float32));
  EXPECT_THROW(qnoise::write_qnz(temp_path("twice.qnz"), model), qnoise::Error);
}
