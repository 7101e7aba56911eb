#include "qnoise/qnz_file.h"

#include <set>

#include "qnoise/error.h"
#include "qnoise/safetensors.h"

namespace qnoise {

namespace {

nlohmann::json describe(const CompressedWeight& w) {
  nlohmann::json d = {{"scheme", to_string(w.scheme)}, {"shape", w.shape}};
  if (w.scheme == WeightScheme::PQ) {
    d["layer_kind"] = to_string(w.layer_kind);
    d["block_size"] = w.block_size;
    if (w.centroid_bits != 16) {
      d["centroid_bits"] = w.centroid_bits;
      d["centroid_scale"] = w.centroid_scale;  // float32, exact through JSON's double
      d["centroid_zero_point"] = w.centroid_zero_point;
    }
  }
  return d;
}

LayerKind parse_layer_kind(const std::string& name) {
  for (auto kind : {LayerKind::Linear, LayerKind::Embedding, LayerKind::Conv2d})
    if (to_string(kind) == name) return kind;
  throw Error("unknown layer kind '" + name + "'");
}

nlohmann::json parse_metadata_json(const std::map<std::string, std::string>& metadata, const std::string& key,
                                   const std::string& path) {
  const auto found = metadata.find(key);
  QNOISE_CHECK(found != metadata.end(), "'", path, "' is not a qnoise model: __metadata__ has no '", key, "'");
  try {
    return nlohmann::json::parse(found->second);
  } catch (const nlohmann::json::exception&) {
    throw Error("'" + path + "': __metadata__ '" + key + "' is not valid JSON");
  }
}

}  // namespace

const CompressedWeight* CompressedModel::find(const std::string& name) const {
  for (const auto& [key, weight] : tensors)
    if (key == name) return &weight;
  return nullptr;
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
    // Float tensors need no description: their dtype and shape are the safetensors entry's.
    if (w.scheme != WeightScheme::Float32 && w.scheme != WeightScheme::Float16) schemes[name] = describe(w);
    switch (w.scheme) {
      case WeightScheme::Float32:
      case WeightScheme::Float16:
        contents.tensors.push_back({name, w.scheme == WeightScheme::Float32 ? "F32" : "F16", w.values});
        break;
      case WeightScheme::Int8:
      case WeightScheme::Int4:
        contents.tensors.push_back({name + ".codes", "U8", w.codes});
        contents.tensors.push_back({name + ".scale", "F32", w.scale});
        contents.tensors.push_back({name + ".zero_point", "U8", w.zero_point});
        break;
      case WeightScheme::PQ:
        contents.tensors.push_back({name + ".codes", w.codes.scalar_type() == at::kByte ? "U8" : "U16", w.codes});
        contents.tensors.push_back({name + ".centroids", w.centroid_bits == 16 ? "F16" : "U8", w.centroids});
        break;
    }
  }
  contents.metadata = {{"format", kQnzFormat},
                       {"format_version", std::to_string(kQnzFormatVersion)},
                       {"task", model.task.dump()},
                       {"artifacts", model.artifacts.dump()},
                       {"plan", model.plan.dump()},
                       {"tensors", schemes.dump()}};
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

  std::set<std::string> used;
  auto take = [&](const std::string& name, const std::string& dtype) -> at::Tensor {
    const NamedTensor* entry = contents.find(name);
    QNOISE_CHECK(entry != nullptr, "'", path, "' lacks tensor '", name, "'");
    QNOISE_CHECK(entry->dtype == dtype || (dtype == "U8|U16" && (entry->dtype == "U8" || entry->dtype == "U16")),
                 "'", path, "': tensor '", name, "' is ", entry->dtype, ", expected ", dtype);
    used.insert(name);
    return entry->tensor;
  };
  for (const auto& [name, d] : schemes.items()) {
    try {
      CompressedWeight w;
      w.scheme = parse_weight_scheme(d.at("scheme").get<std::string>());
      w.shape = d.at("shape").get<std::vector<int64_t>>();
      switch (w.scheme) {
        case WeightScheme::Float32:
        case WeightScheme::Float16:
          throw Error("float tensors are not described in __metadata__ 'tensors'");
        case WeightScheme::Int8:
        case WeightScheme::Int4:
          w.codes = take(name + ".codes", "U8");
          w.scale = take(name + ".scale", "F32");
          w.zero_point = take(name + ".zero_point", "U8");
          break;
        case WeightScheme::PQ:
          w.layer_kind = parse_layer_kind(d.at("layer_kind").get<std::string>());
          w.block_size = d.at("block_size").get<int64_t>();
          w.codes = take(name + ".codes", "U8|U16");
          w.centroid_bits = d.value("centroid_bits", 16);
          if (w.centroid_bits != 16) {
            w.centroid_scale = d.at("centroid_scale").get<float>();
            w.centroid_zero_point = d.at("centroid_zero_point").get<int64_t>();
          }
          w.centroids = take(name + ".centroids", w.centroid_bits == 16 ? "F16" : "U8");
          break;
      }
      w.validate();
      model.tensors.emplace_back(name, std::move(w));
    } catch (const nlohmann::json::exception& e) {
      throw Error("'" + path + "': tensor '" + name + "' has a bad description " + d.dump());
    } catch (const Error& e) {
      const std::string what = e.what();
      throw Error(what.rfind("'" + path + "'", 0) == 0 ? what : "'" + path + "': tensor '" + name + "': " + what);
    }
  }
  // Every other entry is a float tensor stored as itself.
  for (const auto& entry : contents.tensors) {
    if (used.count(entry.name) != 0) continue;
    QNOISE_CHECK(entry.dtype == "F16" || entry.dtype == "F32", "'", path, "': tensor '", entry.name, "' is ",
                 entry.dtype, " but __metadata__ 'tensors' does not describe it (only float16/float32 tensors stand alone)");
    CompressedWeight w;
    w.scheme = entry.dtype == "F16" ? WeightScheme::Float16 : WeightScheme::Float32;
    w.shape = entry.tensor.sizes().vec();
    w.values = entry.tensor;
    model.tensors.emplace_back(entry.name, std::move(w));
  }
  return model;
}

}  // namespace qnoise
