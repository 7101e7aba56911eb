#include "qnoise/qnz_file.h"

#include <ATen/ATen.h>
#include <zlib.h>

#include <algorithm>
#include <set>

#include "qnoise/error.h"
#include "qnoise/json_input.h"
#include "qnoise/safetensors.h"
#include "qnoise/weight_scheme_traits.h"

namespace qnoise {

namespace {

// The scheme of a tensor stored as itself, without a description (float32, float16), from its
// safetensors dtype; nullptr when no such scheme is stored in that dtype.
const WeightSchemeTraits* standalone_scheme(const std::string& dtype) {
  for (WeightScheme scheme : kWeightSchemes) {
    const WeightSchemeTraits& t = traits(scheme);
    CompressedWeight probe;
    probe.scheme = scheme;
    if (t.describe == nullptr && dtype == t.parts[0].dtype(probe)) return &t;
  }
  return nullptr;
}

nlohmann::json parse_metadata_json(const std::map<std::string, std::string>& metadata, const std::string& key,
                                   const std::string& path) {
  const auto found = metadata.find(key);
  QNOISE_CHECK(found != metadata.end(), "'", path, "' is not a qnoise model: __metadata__ has no '", key, "'");
  return parse_json_input(found->second, "'" + path + "': __metadata__ '" + key + "'");
}

// CRC-32 (zlib's) of a tensor's bytes as stored.
uint32_t tensor_crc32(const at::Tensor& tensor) {
  const at::Tensor bytes = tensor.contiguous();
  const auto* data = static_cast<const Bytef*>(bytes.data_ptr());
  uint64_t left = static_cast<uint64_t>(bytes.numel()) * bytes.element_size();
  uLong crc = crc32(0L, Z_NULL, 0);
  for (; left > 0;) {  // zlib takes at most 4 GB per call
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(left, uint64_t{1} << 30));
    crc = crc32(crc, data, chunk);
    data += chunk;
    left -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

// Every tensor against its CRC-32 in __metadata__ 'crc32' (files written before checksums have
// none), and no stored float NaN or infinite: a damaged file is an error naming the tensor, not
// a different answer.
void check_stored_tensors(const SafetensorsContents& contents, const std::string& path) {
  const bool has_checksums = contents.metadata.count("crc32") > 0;
  const nlohmann::json checksums = has_checksums ? parse_metadata_json(contents.metadata, "crc32", path) : nlohmann::json();
  QNOISE_CHECK(!has_checksums || checksums.is_object(), "'", path, "': __metadata__ 'crc32' is not an object");
  for (const auto& entry : contents.tensors) {
    if (has_checksums) {
      const auto found = checksums.find(entry.name);
      QNOISE_CHECK(found != checksums.end() && found->is_number_unsigned(), "'", path, "': tensor '", entry.name,
                   "' has no checksum in __metadata__ 'crc32'");
      QNOISE_CHECK(found->get<uint64_t>() == tensor_crc32(entry.tensor), "'", path, "': tensor '", entry.name,
                   "' does not match its checksum: the file is damaged");
    }
    if (entry.tensor.is_floating_point())
      QNOISE_CHECK(at::isfinite(entry.tensor).all().item<bool>(), "'", path, "': tensor '", entry.name,
                   "' holds NaN or infinite values");
  }
}

// Text artifacts at least this long (a language model's vocabulary) are stored deflated as a U8
// tensor "__artifacts__.<key>", described in __metadata__ 'packed_artifacts' by their inflated
// size; shorter ones stay in the 'artifacts' JSON.
constexpr size_t kPackedArtifactBytes = 4096;
constexpr const char* kArtifactTensorPrefix = "__artifacts__.";
constexpr uint64_t kMaxArtifactBytes = uint64_t{1} << 30;
constexpr uint64_t kMaxDeflateRatio = 1032;  // deflate's limit: a size beyond it is a lie

at::Tensor deflate_text(const std::string& text) {
  uLongf size = compressBound(static_cast<uLong>(text.size()));
  at::Tensor bytes = at::empty({static_cast<int64_t>(size)}, at::kByte);
  const int status = compress2(bytes.data_ptr<uint8_t>(), &size, reinterpret_cast<const Bytef*>(text.data()),
                               static_cast<uLong>(text.size()), Z_BEST_COMPRESSION);
  QNOISE_CHECK(status == Z_OK, "cannot compress an artifact: zlib error ", status);
  return bytes.narrow(0, 0, static_cast<int64_t>(size)).clone();
}

// Inflates exactly `size` bytes, and no more: the declared size bounds the memory a file can make
// qnoise allocate.
std::string inflate_text(const at::Tensor& bytes, uint64_t size, const std::string& where) {
  const auto stored = static_cast<uint64_t>(bytes.numel());
  QNOISE_CHECK(size <= kMaxArtifactBytes && size <= kMaxDeflateRatio * stored + 64, where, " declares ", size,
               " bytes, impossible from ", stored, " deflated bytes (or above 1 GiB)");
  std::string text(size, '\0');
  uLongf length = static_cast<uLongf>(size);
  const int status = uncompress(reinterpret_cast<Bytef*>(text.data()), &length, bytes.data_ptr<uint8_t>(),
                                static_cast<uLong>(stored));
  QNOISE_CHECK(status == Z_OK && length == size, where, " does not inflate to its declared ", size, " bytes",
               status == Z_OK ? "" : " (damaged deflate data)");
  return text;
}

// The artifacts as write_qnz stores them: the JSON of the short ones, the long texts deflated, and
// the packed texts' descriptions.
struct StoredArtifacts {
  nlohmann::json inline_json = nlohmann::json::object();
  std::vector<std::pair<std::string, at::Tensor>> deflated;  // key, U8 tensor
  nlohmann::json packed = nlohmann::json::object();
};

StoredArtifacts store_artifacts(const nlohmann::json& artifacts) {
  StoredArtifacts stored;
  stored.inline_json = artifacts;
  if (!artifacts.is_object()) return stored;
  for (const auto& [key, value] : artifacts.items()) {
    if (!value.is_string() || value.get_ref<const std::string&>().size() < kPackedArtifactBytes) continue;
    const std::string& text = value.get_ref<const std::string&>();
    stored.deflated.emplace_back(key, deflate_text(text));
    stored.packed[key] = {{"bytes", text.size()}, {"encoding", "zlib"}};
    stored.inline_json.erase(key);
  }
  return stored;
}

}  // namespace

int64_t qnz_artifact_bytes(const nlohmann::json& artifacts) {
  const StoredArtifacts stored = store_artifacts(artifacts);
  auto bytes = static_cast<int64_t>(stored.inline_json.dump().size());
  if (!stored.deflated.empty()) bytes += static_cast<int64_t>(stored.packed.dump().size());
  for (const auto& [key, tensor] : stored.deflated) bytes += tensor.numel();
  return bytes;
}

nlohmann::json describe_weight(const CompressedWeight& w) {
  nlohmann::json d = {{"scheme", to_string(w.scheme)}, {"shape", w.shape}};
  if (traits(w.scheme).describe != nullptr) traits(w.scheme).describe(w, d);
  return d;
}

std::vector<std::pair<std::string, at::Tensor>> stored_parts(const CompressedWeight& w) {
  const WeightSchemeTraits& t = traits(w.scheme);
  std::vector<std::pair<std::string, at::Tensor>> parts;
  for (int i = 0; i < t.n_parts; ++i) parts.emplace_back(t.parts[i].suffix, w.*t.parts[i].tensor);
  return parts;
}

CompressedWeight weight_from_description(const nlohmann::json& d, const StoredPartReader& part) {
  CompressedWeight w;
  w.scheme = parse_weight_scheme(d.at("scheme").get<std::string>());
  // nlohmann casts a float to int64_t, which is undefined beyond its range (a shape of [8e300]).
  for (const auto& dim : d.at("shape"))
    QNOISE_CHECK(dim.is_number_integer(), "shape ", quote_json(d.at("shape")), " is not a list of integers");
  w.shape = d.at("shape").get<std::vector<int64_t>>();
  const WeightSchemeTraits& t = traits(w.scheme);
  if (t.parse != nullptr) t.parse(d, w);  // before the parts: pq centroids' dtype depends on centroid_bits
  for (int i = 0; i < t.n_parts; ++i) w.*t.parts[i].tensor = part(t.parts[i].suffix, t.parts[i].dtype(w));
  w.validate();
  return w;
}

const CompressedWeight* CompressedModel::find(const std::string& name) const {
  auto found = index_.find(name);
  const bool stale = index_.size() != tensors.size() ||
                     (found != index_.end() && (found->second >= tensors.size() || tensors[found->second].first != name));
  if (stale) {
    index_.clear();
    for (size_t i = 0; i < tensors.size(); ++i) index_.emplace(tensors[i].first, i);
    found = index_.find(name);
  }
  return found == index_.end() ? nullptr : &tensors[found->second].second;
}

int64_t CompressedModel::stored_bytes() const {
  int64_t bytes = 0;
  for (const auto& [name, weight] : tensors) bytes += weight.stored_bytes();
  return bytes;
}

int64_t CompressedModel::float_bytes() const {
  int64_t bytes = 0;
  for (const auto& [name, weight] : tensors) bytes += 4 * weight.numel();
  return bytes;
}

void write_qnz(const std::string& path, const CompressedModel& model) {
  SafetensorsContents contents;
  nlohmann::json schemes = nlohmann::json::object();
  std::set<std::string> names;
  for (const auto& [name, w] : model.tensors) {
    QNOISE_CHECK(names.insert(name).second, "cannot write '", path, "': two tensors are named '", name, "'");
    w.validate();
    const WeightSchemeTraits& t = traits(w.scheme);
    // Float tensors need no description: their dtype and shape are the safetensors entry's.
    if (t.describe != nullptr) schemes[name] = describe_weight(w);
    for (int i = 0; i < t.n_parts; ++i)
      contents.tensors.push_back({name + t.parts[i].suffix, t.parts[i].dtype(w), w.*t.parts[i].tensor});
  }
  const StoredArtifacts artifacts = store_artifacts(model.artifacts);
  for (const auto& [key, bytes] : artifacts.deflated)
    contents.tensors.push_back({kArtifactTensorPrefix + key, "U8", bytes});
  nlohmann::json checksums = nlohmann::json::object();
  for (const auto& entry : contents.tensors) checksums[entry.name] = tensor_crc32(entry.tensor);
  contents.metadata = {{"format", kQnzFormat},
                       {"format_version", std::to_string(kQnzFormatVersion)},
                       {"task", model.task.dump()},
                       {"artifacts", artifacts.inline_json.dump()},
                       {"plan", model.plan.dump()},
                       {"tensors", schemes.dump()},
                       {"crc32", checksums.dump()}};
  if (!artifacts.packed.empty()) contents.metadata["packed_artifacts"] = artifacts.packed.dump();
  if (model.batch_norm_folded) contents.metadata["batch_norm"] = "folded";
  write_safetensors(path, contents);
}

CompressedModel read_qnz(const std::string& path) {
  const SafetensorsContents contents = read_safetensors(path);
  const auto format = contents.metadata.find("format");
  QNOISE_CHECK(format != contents.metadata.end() && format->second == kQnzFormat, "'", path,
               "' is a safetensors file but not a qnoise model (no __metadata__ format '", kQnzFormat, "')");
  const auto version = contents.metadata.find("format_version");
  QNOISE_CHECK(version != contents.metadata.end() &&
                   (version->second == "1" || version->second == std::to_string(kQnzFormatVersion)),
               "'", path, "' has format version ", version == contents.metadata.end() ? "none" : quote_json(version->second),
               "; this qnoise reads versions 1 to ", kQnzFormatVersion);
  CompressedModel model;
  model.task = parse_metadata_json(contents.metadata, "task", path);
  model.artifacts = parse_metadata_json(contents.metadata, "artifacts", path);
  model.plan = parse_metadata_json(contents.metadata, "plan", path);
  const nlohmann::json schemes = parse_metadata_json(contents.metadata, "tensors", path);
  const auto batch_norm = contents.metadata.find("batch_norm");
  if (batch_norm != contents.metadata.end()) {
    QNOISE_CHECK(batch_norm->second == "folded", "'", path, "': __metadata__ 'batch_norm' is '", batch_norm->second,
                 "', expected 'folded'");
    model.batch_norm_folded = true;
  }
  QNOISE_CHECK(schemes.is_object(), "'", path, "': __metadata__ 'tensors' is not an object");
  check_stored_tensors(contents, path);

  std::set<std::string> used;
  std::unordered_map<std::string, const NamedTensor*> by_name;  // one lookup per part: files of 100k tensors
  for (const auto& entry : contents.tensors) by_name.emplace(entry.name, &entry);
  auto take = [&](const std::string& name, const std::string& dtype) -> at::Tensor {
    const auto found = by_name.find(name);
    QNOISE_CHECK(found != by_name.end(), "'", path, "' lacks tensor '", name, "'");
    const NamedTensor* entry = found->second;
    QNOISE_CHECK(entry->dtype == dtype || (dtype == "U8|U16" && (entry->dtype == "U8" || entry->dtype == "U16")),
                 "'", path, "': tensor '", name, "' is ", entry->dtype, ", expected ", dtype);
    used.insert(name);
    return entry->tensor;
  };
  if (contents.metadata.count("packed_artifacts") != 0) {
    const nlohmann::json packed = parse_metadata_json(contents.metadata, "packed_artifacts", path);
    QNOISE_CHECK(packed.is_object() && model.artifacts.is_object(), "'", path,
                 "': __metadata__ 'packed_artifacts' and 'artifacts' must be objects");
    for (const auto& [key, entry] : packed.items()) {
      const std::string where = "'" + path + "': artifact '" + key + "'";
      QNOISE_CHECK(entry.is_object() && entry.value("encoding", nlohmann::json()) == "zlib" &&
                       entry.contains("bytes") && entry["bytes"].is_number_unsigned(),
                   where, " has a bad description ", quote_json(entry), " (expected {\"bytes\": N, \"encoding\": \"zlib\"})");
      QNOISE_CHECK(!model.artifacts.contains(key), where, " is both packed and in __metadata__ 'artifacts'");
      const at::Tensor deflated = take(kArtifactTensorPrefix + key, "U8");
      QNOISE_CHECK(deflated.dim() == 1, where, ": its tensor is not one-dimensional");
      std::string text = inflate_text(deflated, entry["bytes"].get<uint64_t>(), where);
      try {
        (void)nlohmann::json(text).dump();  // what every later dump of the artifacts needs
      } catch (const nlohmann::json::exception&) {
        throw Error(where + " is not valid UTF-8 text");
      }
      model.artifacts[key] = std::move(text);
    }
  }
  for (const auto& item : schemes.items()) {
    const std::string& name = item.key();  // not a structured binding: a C++17 lambda cannot capture one
    const nlohmann::json& d = item.value();
    try {
      if (traits(parse_weight_scheme(d.at("scheme").get<std::string>())).parse == nullptr)
        throw Error("float tensors are not described in __metadata__ 'tensors'");
      model.tensors.emplace_back(name, weight_from_description(d, [&](const std::string& suffix, const std::string& dtype) {
                                   return take(name + suffix, dtype);
                                 }));
    } catch (const nlohmann::json::exception& e) {
      throw Error("'" + path + "': tensor '" + name + "' has a bad description " + quote_json(d));
    } catch (const Error& e) {
      const std::string what = e.what();
      throw Error(what.rfind("'" + path + "'", 0) == 0 ? what : "'" + path + "': tensor '" + name + "': " + what);
    }
  }
  // Every other entry is a float tensor stored as itself.
  for (const auto& entry : contents.tensors) {
    if (used.count(entry.name) != 0) continue;
    // One weight, one name: lookups by name would otherwise see only one of the two.
    QNOISE_CHECK(!schemes.contains(entry.name), "'", path, "': tensor '", entry.name,
                 "' is stored on its own and also described in __metadata__ 'tensors'");
    const WeightSchemeTraits* alone = standalone_scheme(entry.dtype);
    QNOISE_CHECK(alone != nullptr, "'", path, "': tensor '", entry.name, "' is ", entry.dtype,
                 " but __metadata__ 'tensors' does not describe it (only float16/float32 tensors stand alone)");
    CompressedWeight w;
    w.scheme = alone->scheme;
    w.shape = entry.tensor.sizes().vec();
    w.*alone->parts[0].tensor = entry.tensor;
    model.tensors.emplace_back(entry.name, std::move(w));
  }
  return model;
}

}  // namespace qnoise
