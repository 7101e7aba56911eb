#include "ops/packed_layer.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/library.h>

#include "ops/compressed_tensor.h"
#include "ops/op_registry.h"
#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/json_input.h"
#include "qnoise/layer_kernel_factory.h"

namespace qnoise::ops {

namespace {

// Layers the runtime has no kernel for (float weights, pq with K > 256): the weight decoded once and
// run by torch's own operators.
class DecodedKernel : public LayerKernel {
 public:
  DecodedKernel(const CompressedWeight& weight, at::Tensor bias, LayerGeometry geometry)
      : weight_(weight.decode()), bias_(std::move(bias)), geometry_(std::move(geometry)) {}

  at::Tensor forward(const at::Tensor& input) const override {
    const LayerGeometry& g = geometry_;
    switch (g.kind) {
      case LayerKind::Linear: return at::linear(input, weight_, bias_);
      case LayerKind::Embedding: return at::embedding(weight_, input);
      case LayerKind::Conv1d: return at::conv1d(input, weight_, bias_, g.stride, g.padding, g.dilation, g.groups);
      case LayerKind::Conv2d: return at::conv2d(input, weight_, bias_, g.stride, g.padding, g.dilation, g.groups);
    }
    throw Error("unknown layer kind");
  }
  at::Tensor linear(const at::Tensor& input) const override {
    QNOISE_CHECK(weight_.dim() == 2, "a convolution cannot be used as a linear layer");
    return at::linear(input, weight_);
  }
  at::Tensor weight() const override { return weight_; }
  int64_t resident_bytes() const override {
    return (weight_.numel() + (bias_.defined() ? bias_.numel() : 0)) * 4;
  }

 private:
  at::Tensor weight_;
  at::Tensor bias_;
  LayerGeometry geometry_;
};

std::shared_ptr<const LayerKernel> build_kernel(const PackedLayerConfig& c) {
  QNOISE_CHECK(!c.bias.defined() || (c.bias.dim() == 1 && c.bias.size(0) == c.weight.shape[0]), "bias of shape ",
               c.bias.sizes(), " does not fit a weight of shape ", shape_to_string(c.weight.shape));
  QNOISE_CHECK(!c.bias.defined() || c.geometry.kind != LayerKind::Embedding, "an Embedding has no bias");
  if (auto kernel = make_layer_kernel(c.weight, c.bias, c.geometry, c.options)) return kernel;
  return std::make_shared<DecodedKernel>(c.weight, c.bias, c.geometry);
}

using PackedLayerState = std::tuple<std::string, c10::Dict<std::string, at::Tensor>>;

PackedLayerState packed_state(const PackedLayerConfig& c) {
  auto [weight_description, parts] = state_of(c.weight);
  c10::Dict<std::string, at::Tensor> tensors;
  for (const auto& part : parts) tensors.insert("weight" + part.key(), part.value());
  if (c.bias.defined()) tensors.insert("bias", c.bias);
  if (c.input_quant.defined()) tensors.insert("input_quant", c.input_quant);
  const nlohmann::json config = {{"weight", nlohmann::json::parse(weight_description)},
                                 {"kind", layer_kind_name(c.geometry.kind)},
                                 {"stride", c.geometry.stride},
                                 {"padding", c.geometry.padding},
                                 {"dilation", c.geometry.dilation},
                                 {"groups", c.geometry.groups},
                                 {"kernels", to_string(c.options.kernel_path)},
                                 {"int8_activations", c.options.int8_activations}};
  return {config.dump(), tensors};
}

PackedLayerConfig packed_config(const PackedLayerState& state) {
  const auto& [text, tensors] = state;
  try {
    const nlohmann::json config = parse_json_text(text, "a packed layer's state");
    c10::Dict<std::string, at::Tensor> parts;
    for (const auto& item : tensors)
      if (item.key().rfind("weight", 0) == 0) parts.insert(item.key().substr(6), item.value());
    PackedLayerConfig c;
    c.weight = weight_of({config.at("weight").dump(), parts});
    if (tensors.contains("bias")) c.bias = tensors.at("bias");
    if (tensors.contains("input_quant")) c.input_quant = tensors.at("input_quant");
    c.geometry.kind = parse_layer_kind_name(config.at("kind").get<std::string>());
    c.geometry.stride = json_integers(config.at("stride"), "stride");
    c.geometry.padding = json_integers(config.at("padding"), "padding");
    c.geometry.dilation = json_integers(config.at("dilation"), "dilation");
    c.geometry.groups = json_integer(config.at("groups"), "groups");
    c.options.kernel_path = parse_kernel_path(config.at("kernels").get<std::string>());
    c.options.int8_activations = config.at("int8_activations").get<bool>();
    return c;
  } catch (const nlohmann::json::exception&) {
    throw Error("not a packed layer's state: " + text);
  }
}

using PackedLayerRef = c10::intrusive_ptr<PackedLayer>;

}  // namespace

PackedLayer::PackedLayer(PackedLayerConfig config) : config_(std::move(config)), kernel_(build_kernel(config_)) {
  if (!config_.input_quant.defined()) return;
  QNOISE_CHECK(config_.geometry.kind != LayerKind::Embedding, "an Embedding's input (ids) cannot be quantized");
  check_calibrated_input_quant(config_.input_quant, "int8 activations: the layer's input_quant state");
}

at::Tensor PackedLayer::forward(const at::Tensor& input) const {
  if (!config_.input_quant.defined()) return kernel_->forward(input);
  at::Tensor state = config_.input_quant;  // calibrated: quantize_input only reads it
  return kernel_->forward(quantize_input(state, input));
}

void register_packed_layer(torch::Library& library) {
  library.class_<PackedLayer>("PackedLayer")
      .def(torch::init([](const c10::intrusive_ptr<CompressedTensor>& weight, c10::optional<at::Tensor> bias,
                          std::string kind, std::vector<int64_t> stride, std::vector<int64_t> padding,
                          std::vector<int64_t> dilation, int64_t groups, c10::optional<at::Tensor> input_quant,
                          bool int8_activations, std::string kernels) {
        PackedLayerConfig c;
        c.weight = weight->weight;
        if (bias) c.bias = bias->detach().to(at::kFloat).contiguous();
        c.geometry = {parse_layer_kind_name(kind), std::move(stride), std::move(padding), std::move(dilation), groups, true};
        if (input_quant) c.input_quant = input_quant->detach().to(at::kFloat).clone();
        c.options.kernel_path = parse_kernel_path(kernels);
        c.options.int8_activations = int8_activations;
        return c10::make_intrusive<PackedLayer>(std::move(c));
      }))
      .def("forward", [](const PackedLayerRef& self, const at::Tensor& input) { return self->forward(input); })
      .def("weight", [](const PackedLayerRef& self) { return self->kernel().weight(); })
      .def("compressed", [](const PackedLayerRef& self) { return c10::make_intrusive<CompressedTensor>(self->config().weight); })
      .def("bias", [](const PackedLayerRef& self) -> c10::optional<at::Tensor> {
        if (!self->config().bias.defined()) return c10::nullopt;
        return self->config().bias;
      })
      .def("input_quant", [](const PackedLayerRef& self) -> c10::optional<at::Tensor> {
        if (!self->config().input_quant.defined()) return c10::nullopt;
        return self->config().input_quant;
      })
      .def("resident_bytes", [](const PackedLayerRef& self) { return self->kernel().resident_bytes(); })
      .def("kind", [](const PackedLayerRef& self) { return layer_kind_name(self->config().geometry.kind); })
      .def_pickle([](const PackedLayerRef& self) { return packed_state(self->config()); },
                  [](PackedLayerState state) { return c10::make_intrusive<PackedLayer>(packed_config(state)); });
}

}  // namespace qnoise::ops
