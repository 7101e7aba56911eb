#pragma once
// The compressed model file (.qnz): a safetensors container holding every tensor of a model in
// its stored form (see compressed_weight.h), and in __metadata__ what is needed to rebuild and use
// the model: the task configuration (architecture, data, vocabulary), the scheme of every tensor
// and the quantization plan. docs/format.md lists every name and type.
//
// Tensor names: a float tensor "P" is stored as "P"; a quantized one as "P.codes" plus
// "P.scale" and "P.zero_point" (int8/int4) or "P.centroids" (pq), where P is the parameter's
// name in the model ("decoder.layers.0.fc1.weight").
#include <nlohmann/json.hpp>

#include <functional>

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "qnoise/compressed_weight.h"

namespace qnoise {

inline constexpr const char* kQnzFormat = "qnoise-qnz";
// Version 2 stores long text artifacts deflated (docs/format.md); version 1 files still read.
inline constexpr int kQnzFormatVersion = 2;

struct CompressedModel {
  nlohmann::json task;       // the task configuration (make_training_task builds the model)
  nlohmann::json artifacts;  // vocabulary, label names, normalization
  nlohmann::json plan;       // how it was quantized (scheme, stages), for the record
  // Batch-norm layers store weight / sqrt(var + eps) and bias - mean * that as their weight and
  // bias, and no statistics (__metadata__ "batch_norm": "folded").
  bool batch_norm_folded = false;
  std::vector<std::pair<std::string, CompressedWeight>> tensors;  // every parameter and buffer

  // By a hashed index of `tensors`, rebuilt when they change.
  const CompressedWeight* find(const std::string& name) const;
  int64_t stored_bytes() const;  // all tensors
  int64_t float_bytes() const;   // the same tensors in float32

 private:
  mutable std::unordered_map<std::string, size_t> index_;  // name -> position in tensors
};

// One weight in its .qnz form (also how the Python operator library pickles one): its description
// (scheme, shape and what the scheme adds: its entry in __metadata__ 'tensors') and its stored
// tensors, by the suffix that follows the weight's name ("" for float values, ".codes", ...).
nlohmann::json describe_weight(const CompressedWeight& w);
std::vector<std::pair<std::string, at::Tensor>> stored_parts(const CompressedWeight& w);
// Gives the stored tensor of a suffix, checked to have the safetensors dtype given ("U8|U16": either).
using StoredPartReader = std::function<at::Tensor(const std::string& suffix, const std::string& dtype)>;
// The inverse of both, validated. Throws qnoise::Error (or nlohmann::json's exceptions on missing or
// mistyped fields).
CompressedWeight weight_from_description(const nlohmann::json& description, const StoredPartReader& part);

// Bytes a model's artifacts take in its .qnz (long texts such as a vocabulary deflated), for reports.
int64_t qnz_artifact_bytes(const nlohmann::json& artifacts);

// Writes atomically. Throws qnoise::Error on a tensor that does not validate.
void write_qnz(const std::string& path, const CompressedModel& model);

// Reads and validates everything (container, metadata, every tensor's parts: dtypes, sizes,
// codes < K); throws qnoise::Error naming the file and the problem.
CompressedModel read_qnz(const std::string& path);

}  // namespace qnoise
