#include "cli/torchscript_quantization.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <map>
#include <regex>
#include <set>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/quantization_plan.h"
#include "qnoise/seeded_order.h"

namespace qnoise::cli {

namespace {

// A scripted torch.nn layer qnoise compresses, found by its TorchScript type.
struct ScriptedLayer {
  std::string name;
  torch::jit::Module module;
  LayerKind kind;
};

std::vector<ScriptedLayer> compressible_layers(const torch::jit::Module& module) {
  const std::map<std::string, LayerKind> kinds = {{"__torch__.torch.nn.modules.linear.Linear", LayerKind::Linear},
                                                  {"__torch__.torch.nn.modules.conv.Conv2d", LayerKind::Conv2d},
                                                  {"__torch__.torch.nn.modules.sparse.Embedding", LayerKind::Embedding}};
  std::vector<ScriptedLayer> layers;
  for (const auto& item : module.named_modules()) {
    const auto type_name = item.value.type()->name();
    if (!type_name) continue;
    // Scripting the same class twice mangles the later ones' names (...conv.___torch_mangle_0.Conv2d).
    const std::string qualified =
        std::regex_replace(type_name->qualifiedName(), std::regex(R"(___torch_mangle_\d+\.)"), "");
    const auto kind = kinds.find(qualified);
    if (kind != kinds.end() && item.value.hasattr("weight")) layers.push_back({item.name, item.value, kind->second});
  }
  return layers;
}

std::string weight_name(const ScriptedLayer& layer) {
  return layer.name.empty() ? "weight" : layer.name + ".weight";
}

int64_t pq_block_size(const ScriptedLayer& layer, const at::Tensor& weight, int64_t block_size) {
  if (layer.kind == LayerKind::Conv2d && weight.size(2) * weight.size(3) > 1) return weight.size(2) * weight.size(3);
  return block_size;
}

// One PQ layer during finetuning: its weight is codebook[codes], the codebook trainable.
struct PqLayer {
  ScriptedLayer layer;
  BlockLayout layout;
  at::Tensor codebook;       // [K, d], requires grad
  at::Tensor codes;          // int64 [n_blocks]
  at::Tensor inverse_uses;   // [K, 1]: a centroid moves by the mean gradient of its blocks
  at::Tensor decoded() const { return layout.from_blocks(codebook.index_select(0, codes)); }
};

void finetune(torch::jit::Module& module, std::vector<PqLayer>& pq, const std::set<std::string>& quantized,
              const TorchscriptQuantization& options) {
  const TrainingLoss loss_of_batch = training_loss(options.task);
  std::vector<at::Tensor> parameters;
  for (const auto& item : module.named_parameters())
    if (quantized.count(item.name) == 0 && item.value.requires_grad()) parameters.push_back(item.value);
  for (const auto& layer : pq) parameters.push_back(layer.codebook);
  torch::optim::Adam adam(parameters, torch::optim::AdamOptions(options.lr));
  at::Generator generator = at::detail::createCPUGenerator(1);
  module.train();
  for (int64_t step = 0; step < options.finetune_steps; ++step) {
    for (auto& layer : pq) layer.layer.module.setattr("weight", layer.decoded());
    const at::Tensor loss = loss_of_batch(module, generator);
    adam.zero_grad();
    loss.backward();
    for (auto& layer : pq) layer.codebook.mutable_grad().mul_(layer.inverse_uses);
    adam.step();
  }
  module.eval();
}

}  // namespace

CompressedModel quantize_torchscript(torch::jit::Module& module, const TorchscriptQuantization& options,
                                     nlohmann::json& report) {
  QNOISE_CHECK(options.scheme == "int8" || options.scheme == "int4" || options.scheme == "ipq",
               "--scheme for a TorchScript model: int8, int4 or ipq, not '", options.scheme, "'");
  QNOISE_CHECK(options.finetune_steps == 0 || options.scheme == "ipq", "--finetune-steps applies to --scheme ipq");
  const std::vector<ScriptedLayer> layers = compressible_layers(module);
  QNOISE_CHECK(!layers.empty(), "the TorchScript model has no torch.nn Linear, Conv2d or Embedding layer to compress");
  at::NoGradGuard no_grad;
  std::map<std::string, CompressedWeight> compressed;
  std::vector<PqLayer> pq;
  const QuantizationPlan plan;  // its K rule: at most a quarter of a layer's blocks
  PqStage stage;
  stage.n_centroids = options.n_centroids;
  for (const ScriptedLayer& layer : layers) {
    const at::Tensor weight = layer.module.attr("weight").toTensor().detach().to(at::kFloat).contiguous();
    if (options.scheme != "ipq") {
      compressed[weight_name(layer)] = compress_scalar(weight, options.scheme == "int8" ? 8 : 4);
      continue;
    }
    const BlockLayout layout(layer.kind, weight.sizes().vec(), pq_block_size(layer, weight, options.block_size));
    const at::Tensor blocks = layout.to_blocks(weight);
    const int64_t k = plan.centroids_for(stage, layout.n_blocks());
    ProductQuantizer quantizer(layout.block_size(),
                               ProductQuantizerOptions().set_n_centroids(k).set_seed(mix_seed(1, pq.size())));
    quantizer.train(blocks);
    const at::Tensor codes = quantizer.compute_codes(blocks).to(at::kLong).bitwise_and(0xFFFF);
    const at::Tensor uses = at::bincount(codes, {}, k).clamp_min(1).to(at::kFloat).unsqueeze(1);
    pq.push_back({layer, layout, quantizer.codebook().clone().set_requires_grad(true), codes, uses.reciprocal()});
  }
  std::set<std::string> quantized;
  for (const auto& layer : pq) quantized.insert(weight_name(layer.layer));
  if (options.finetune_steps > 0) {
    at::AutoGradMode grad(true);
    finetune(module, pq, quantized, options);
  }
  for (const auto& layer : pq) {
    const at::Tensor codebook = layer.codebook.detach();
    compressed[weight_name(layer.layer)] = compress_pq(layer.layout, codebook, layer.codes.to(ProductQuantizer::index_dtype(codebook.size(0))));
  }
  // Every quantized weight holds its decoded value, every other float tensor its float16 rounding:
  // the module computes what the file holds.
  CompressedModel file;
  file.plan = {{"scheme", options.scheme}, {"source", "torchscript"}};
  if (options.scheme == "ipq")
    file.plan.update({{"block_size", options.block_size}, {"n_centroids", options.n_centroids},
                      {"finetune_steps", options.finetune_steps}});
  for (ScriptedLayer layer : layers)  // a copy of the handle: setattr is not const
    layer.module.setattr("weight", compressed.at(weight_name(layer)).decode().set_requires_grad(false));
  auto add = [&](const std::string& name, const at::Tensor& tensor) {
    const auto found = compressed.find(name);
    if (found != compressed.end()) {
      file.tensors.emplace_back(name, found->second);
    } else if (tensor.is_floating_point()) {
      CompressedWeight rest = compress_float(tensor.detach().to(at::kFloat).contiguous(), WeightScheme::Float16);
      tensor.detach().copy_(rest.decode());
      file.tensors.emplace_back(name, std::move(rest));
    }
  };
  for (const auto& item : module.named_parameters()) add(item.name, item.value);
  for (const auto& item : module.named_buffers()) add(item.name, item.value);
  report = {{"layers", layers.size()}, {"stored_bytes", file.stored_bytes()}, {"float_bytes", file.float_bytes()}};
  return file;
}

void load_qnz_into_torchscript(torch::jit::Module& module, const CompressedModel& file, const std::string& path) {
  std::map<std::string, at::Tensor> expected;
  for (const auto& item : module.named_parameters()) expected[item.name] = item.value;
  for (const auto& item : module.named_buffers())
    if (item.value.is_floating_point()) expected[item.name] = item.value;
  std::vector<std::string> missing, unexpected, shapes;
  for (const auto& [name, tensor] : expected)
    if (file.find(name) == nullptr) missing.push_back(name);
  for (const auto& [name, weight] : file.tensors) {
    const auto found = expected.find(name);
    if (found == expected.end()) unexpected.push_back(name);
    else if (found->second.sizes().vec() != weight.shape)
      shapes.push_back(name + " (file " + shape_to_string(weight.shape) + ", model " +
                       shape_to_string(found->second.sizes().vec()) + ")");
  }
  auto list = [](const std::vector<std::string>& names) {
    std::string text;
    for (const auto& n : names) text += (text.empty() ? "" : ", ") + n;
    return text;
  };
  QNOISE_CHECK(missing.empty() && unexpected.empty() && shapes.empty(), "'", path,
               "' does not match the TorchScript model:", missing.empty() ? "" : " missing from the file: " + list(missing),
               unexpected.empty() ? "" : " | not in the model: " + list(unexpected),
               shapes.empty() ? "" : " | shapes differ: " + list(shapes));
  at::NoGradGuard no_grad;
  for (const auto& [name, weight] : file.tensors) expected.at(name).copy_(weight.decode());
}

}  // namespace qnoise::cli
