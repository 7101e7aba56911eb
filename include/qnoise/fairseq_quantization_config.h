#pragma once
// fairseq's iPQ configuration (examples/quant_noise, --quantization-config-path) as a qnoise
// quantization plan. The YAML file has three keys:
//
//   n_centroids:                  # K per layer type, chosen by an attribute of the layer
//     Linear: {key: in_features, value: {"*": 256}}
//   block_sizes:                  # or by `fuzzy_name`: the first key that is part of the layer's name
//     Linear: {key: fuzzy_name, value: {fc: 8, attn: 4, emb: 4}}
//   layers_to_quantize:           # one regex per iPQ stage, over the layers' module names
//     - decoder\.layers\.\d+\.fc[12]
//
// A key left out takes fairseq's default (parse_config_yaml: its Transformer LM example). Since the
// block size and K depend on each layer, the plan is made for one model: each fairseq stage becomes
// one qnoise stage per (block size, K) its layers get, listing their names exactly.
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qnoise/quantization_plan.h"

namespace qnoise {

// One layer type's entry of n_centroids or block_sizes.
struct FairseqLayerParameter {
  std::string key;  // a layer attribute ("in_features", "kernel_size", ...) or "fuzzy_name"
  // The values by the attribute's value as text ("512", "(3, 3)"; "*": the default), or by part of
  // the layer's name; in the file's order (fuzzy_name takes the first key found in the name).
  std::vector<std::pair<std::string, int64_t>> values;
};

struct FairseqQuantizationConfig {
  std::map<std::string, FairseqLayerParameter> n_centroids;  // by layer type: Linear, Embedding, Conv2d
  std::map<std::string, FairseqLayerParameter> block_sizes;
  std::vector<std::string> layers_to_quantize;  // regexes, one iPQ stage each
};

// fairseq's defaults, used for the keys a file leaves out.
FairseqQuantizationConfig default_fairseq_quantization_config();

// Throws qnoise::Error naming the problem: YAML that does not parse, an unknown or malformed key,
// a value that is not a positive integer, K outside [2, 65536], an empty layers_to_quantize.
// `source` names the text in messages (a file name).
FairseqQuantizationConfig parse_fairseq_quantization_config(const std::string& yaml_text,
                                                            const std::string& source = "fairseq quantization config");
FairseqQuantizationConfig read_fairseq_quantization_config(const std::string& path);

// True for a .yaml or .yml file name: a plan file in fairseq's format rather than qnoise's JSON.
bool is_fairseq_quantization_config_path(const std::string& path);

// The plan `config` gives `model`'s layers, with `settings`' finetuning, noise and k-means options
// (its stages are replaced). A regex matches a module name from its start, as Python's re.match
// does in fairseq, with an optional "module." prefix; the layers are the modules holding a `weight`
// parameter, as fairseq takes them from named_parameters(). A backslash pair in a regex stands for
// one backslash (fairseq's example YAML is written so; a module name holds no backslash). Stages
// are named "stageN", or "stageN_blockB_kK" when one fairseq stage splits. Throws qnoise::Error
// naming the stage and layer when a regex does not compile or matches no layer, a layer is not a
// Linear, Conv2d or Embedding, was taken by an earlier stage, its type has no entry, its attribute
// is unknown, or no value fits it and there is no "*" default.
QuantizationPlan fairseq_quantization_plan(const FairseqQuantizationConfig& config, torch::nn::Module& model,
                                           const QuantizationPlan& settings = {});

}  // namespace qnoise
