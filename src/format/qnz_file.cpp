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

}  // namespace

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
  for (const auto& [name, w] : model.tensors) {
    w.validate();
    const WeightSchemeTraits& t = traits(w.scheme);
    // Float tensors need no description: their dtype and shape are the safetensors entry's.
    if (t.describe != nullptr) schemes[name] = describe_weight(w);
    for (int i = 0; i < t.n_parts; ++i)
      contents.tensors.push_back({name + t.parts[i].suffix, t.parts[i].dtype(w), w.*t.parts[i].tensor});
  }
  nlohmann::json checksums = nlohmann::json::object();
  for (const auto& entry : contents.tensors) checksums[entry.name] = tensor_crc32(entry.tensor);
  contents.metadata = {{"format", kQnzFormat},
                       {"format_version", std::to_string(kQnzFormatVersion)},
                       {"task", model.task.dump()},
                       {"artifacts", model.artifacts.dump()},
                       {"plan", model.plan.dump()},
                       {"tensors", schemes.dump()},
                       {"crc32", checksums.dump()}};
  if (model.batch_norm_folded) contents.metadata["batch_norm"] = "folded";
  write_safetensors(path, contents);
}

CompressedModel read_qnz(const std::string& path) {
  const SafetensorsContents contents = read_safetensors(path);
  const auto format = contents.metadata.find("format");
  QNOISE_CHECK(format != contents.metadata.end() && format->second == kQnzFormat, "'", path,
               "' is a safetensors file but not a qnoise model (no __metadata__ format '", kQnzFormat, "')");
  const auto version = contents.metadata.find("format_version");
  QNOISE_CHECK(version != contents.metadata.end() && version->second == std::to_string(kQnzFormatVersion), "'",
               path, "' has format version ", version == contents.metadata.end() ? "none" : version->second,
               "; this qnoise reads version ", kQnzFormatVersion);
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
