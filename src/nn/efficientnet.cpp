#include "qnoise/efficientnet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/pooling.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "qnoise/layer_kernel.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"

namespace qnoise {

namespace F = torch::nn::functional;

std::vector<MBConvStage> EfficientNetOptions::default_stages() {
  // {expand_ratio, kernel_size, stride, out_channels, repeats}
  return {{1, 3, 1, 16, 1}, {4, 3, 2, 24, 2}, {4, 3, 1, 40, 2}, {4, 3, 2, 80, 2}};
}

int64_t round_channels(double channels, double multiplier, int64_t divisor) {
  const double scaled = channels * multiplier;
  int64_t rounded = std::max<int64_t>(
      divisor, static_cast<int64_t>(scaled + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * scaled) rounded += divisor;
  return rounded;
}

namespace {

torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                            int64_t groups = 1, bool bias = false) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                               .stride(stride)
                               .padding(kernel / 2)
                               .groups(groups)
                               .bias(bias));
}

torch::nn::BatchNorm2d make_bn(int64_t channels) {
  // PyTorch's default momentum, not EfficientNet's 0.01 (tuned for long ImageNet runs): short
  // runs on small data need the running statistics to settle fast.
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).momentum(0.1).eps(1e-3));
}

void check_options(const EfficientNetOptions& o) {
  QNOISE_CHECK(o.width_multiplier() > 0 && std::isfinite(o.width_multiplier()),
               "EfficientNet: width_multiplier must be positive, got ", o.width_multiplier());
  QNOISE_CHECK(o.depth_multiplier() > 0 && std::isfinite(o.depth_multiplier()),
               "EfficientNet: depth_multiplier must be positive, got ", o.depth_multiplier());
  QNOISE_CHECK(o.in_channels() > 0, "EfficientNet: in_channels must be positive, got ",
               o.in_channels());
  QNOISE_CHECK(o.n_classes() > 0, "EfficientNet: n_classes must be positive, got ", o.n_classes());
  QNOISE_CHECK(o.stem_channels() > 0, "EfficientNet: stem_channels must be positive, got ",
               o.stem_channels());
  QNOISE_CHECK(o.stem_stride() == 1 || o.stem_stride() == 2,
               "EfficientNet: stem_stride must be 1 or 2, got ", o.stem_stride());
  QNOISE_CHECK(o.head_channels() > 0, "EfficientNet: head_channels must be positive, got ",
               o.head_channels());
  QNOISE_CHECK(o.se_ratio() >= 0 && o.se_ratio() <= 1, "EfficientNet: se_ratio must be in [0, 1], got ",
               o.se_ratio());
  QNOISE_CHECK(o.dropout() >= 0 && o.dropout() < 1, "EfficientNet: dropout must be in [0, 1), got ",
               o.dropout());
  QNOISE_CHECK(!o.stages().empty(), "EfficientNet: at least one stage is needed");
  for (size_t s = 0; s < o.stages().size(); ++s) {
    const MBConvStage& st = o.stages()[s];
    QNOISE_CHECK(st.expand_ratio > 0, "EfficientNet: stage ", s, ": expand_ratio must be positive, got ",
                 st.expand_ratio);
    QNOISE_CHECK(st.kernel_size > 0 && st.kernel_size % 2 == 1, "EfficientNet: stage ", s,
                 ": kernel_size must be odd and positive, got ", st.kernel_size);
    QNOISE_CHECK(st.stride == 1 || st.stride == 2, "EfficientNet: stage ", s,
                 ": stride must be 1 or 2, got ", st.stride);
    QNOISE_CHECK(st.out_channels > 0, "EfficientNet: stage ", s, ": out_channels must be positive, got ",
                 st.out_channels);
    QNOISE_CHECK(st.repeats > 0, "EfficientNet: stage ", s, ": repeats must be positive, got ",
                 st.repeats);
  }
}

void check_images(const at::Tensor& images, int64_t channels, const char* model) {
  QNOISE_CHECK(images.defined() && images.dim() == 4, model,
               ": expected images [batch, channels, rows, cols], got ",
               images.defined() ? images.sizes() : at::IntArrayRef{});
  QNOISE_CHECK(images.size(1) == channels, model, ": expected ", channels, " channels, got ",
               images.size(1), " (images ", images.sizes(), ")");
}

}  // namespace

ConvBnActImpl::ConvBnActImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                             int64_t stride, int64_t groups, bool activation)
    : activation(activation) {
  conv = register_module("conv", make_conv(in_channels, out_channels, kernel_size, stride, groups));
  bn = register_module("bn", make_bn(out_channels));
}

at::Tensor ConvBnActImpl::forward(const at::Tensor& x) {
  at::Tensor y = bn->forward(run_layer(conv, x));
  return activation ? at::silu(y) : y;
}

SqueezeExcitationImpl::SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels) {
  reduce = register_module("reduce", make_conv(channels, squeeze_channels, 1, 1, 1, /*bias=*/true));
  expand = register_module("expand", make_conv(squeeze_channels, channels, 1, 1, 1, /*bias=*/true));
}

at::Tensor SqueezeExcitationImpl::forward(const at::Tensor& x) {
  at::Tensor scale = x.mean({2, 3}, /*keepdim=*/true);
  scale = at::sigmoid(run_layer(expand, at::silu(run_layer(reduce, scale))));
  return x * scale;
}

MBConvBlockImpl::MBConvBlockImpl(int64_t in_channels, int64_t out_channels, int64_t expand_ratio,
                                 int64_t kernel_size, int64_t stride, int64_t squeeze_channels)
    : residual_(stride == 1 && in_channels == out_channels) {
  const int64_t hidden = in_channels * expand_ratio;
  if (expand_ratio != 1) {
    expand = register_module("expand", make_conv(in_channels, hidden, 1));
    expand_bn = register_module("expand_bn", make_bn(hidden));
  }
  depthwise = register_module("depthwise", make_conv(hidden, hidden, kernel_size, stride, hidden));
  depthwise_bn = register_module("depthwise_bn", make_bn(hidden));
  if (squeeze_channels > 0) se = register_module("se", SqueezeExcitation(hidden, squeeze_channels));
  project = register_module("project", make_conv(hidden, out_channels, 1));
  project_bn = register_module("project_bn", make_bn(out_channels));
}

at::Tensor MBConvBlockImpl::forward(const at::Tensor& x) {
  at::Tensor y = x;
  if (!expand.is_empty()) y = at::silu(expand_bn->forward(run_layer(expand, y)));
  y = at::silu(depthwise_bn->forward(run_layer(depthwise, y)));
  if (!se.is_empty()) y = se->forward(y);
  y = project_bn->forward(run_layer(project, y));
  return residual_ ? y + x : y;
}

EfficientNetImpl::EfficientNetImpl(EfficientNetOptions options) : options_(std::move(options)) {
  check_options(options_);
  const double width = options_.width_multiplier();
  int64_t channels = round_channels(options_.stem_channels(), width);
  stem = register_module("stem", ConvBnAct(options_.in_channels(), channels, 3,
                                           options_.stem_stride()));
  stages = register_module("stages", torch::nn::ModuleList());
  for (const MBConvStage& stage : options_.stages()) {
    const int64_t out = round_channels(stage.out_channels, width);
    const auto repeats =
        static_cast<int64_t>(std::ceil(stage.repeats * options_.depth_multiplier() - 1e-9));
    torch::nn::ModuleList blocks;
    for (int64_t b = 0; b < std::max<int64_t>(1, repeats); ++b) {
      const int64_t squeeze =
          options_.se_ratio() > 0 ? round_channels(channels, options_.se_ratio()) : 0;
      blocks->push_back(MBConvBlock(channels, out, stage.expand_ratio, stage.kernel_size,
                                    b == 0 ? stage.stride : 1, squeeze));
      channels = out;
    }
    stages->push_back(blocks);
  }
  const int64_t head_channels = round_channels(options_.head_channels(), width);
  head = register_module("head", ConvBnAct(channels, head_channels, 1));
  dropout = register_module("dropout", torch::nn::Dropout(options_.dropout()));
  classifier = register_module("classifier", make_linear(torch::nn::LinearOptions(head_channels, options_.n_classes())));
}

at::Tensor EfficientNetImpl::forward(const at::Tensor& images) {
  check_images(images, options_.in_channels(), "EfficientNet");
  at::Tensor x = stem->forward(images);
  for (const auto& stage : *stages)
    for (const auto& block : *stage->as<torch::nn::ModuleList>())
      x = block->as<MBConvBlock>()->forward(x);
  x = head->forward(x).mean({2, 3});
  return run_layer(classifier, dropout->forward(x));
}

size_t EfficientNetImpl::n_blocks(size_t stage) const {
  QNOISE_CHECK(stage < stages->size(), "EfficientNet: no stage ", stage, " (", stages->size(),
               " stages)");
  return stages->ptr(stage)->as<torch::nn::ModuleList>()->size();
}

MBConvBlock EfficientNetImpl::block(size_t stage, size_t index) const {
  QNOISE_CHECK(index < n_blocks(stage), "EfficientNet: no block ", index, " in stage ", stage);
  return MBConvBlock(std::dynamic_pointer_cast<MBConvBlockImpl>(
      stages->ptr(stage)->as<torch::nn::ModuleList>()->ptr(index)));
}

SmallCnnImpl::SmallCnnImpl(SmallCnnOptions options) : options_(options) {
  QNOISE_CHECK(options_.in_channels() > 0 && options_.n_classes() > 0 && options_.channels() > 0,
               "SmallCnn: in_channels, n_classes and channels must be positive, got ",
               options_.in_channels(), ", ", options_.n_classes(), ", ", options_.channels());
  const int64_t c = options_.channels();
  conv1 = register_module("conv1", make_conv(options_.in_channels(), c, 3, 1, 1, true));
  conv2 = register_module("conv2", make_conv(c, 2 * c, 3, 1, 1, true));
  conv3 = register_module("conv3", make_conv(2 * c, 2 * c, 1, 1, 1, true));
  classifier = register_module("classifier", make_linear(torch::nn::LinearOptions(2 * c, options_.n_classes())));
}

at::Tensor SmallCnnImpl::forward(const at::Tensor& images) {
  check_images(images, options_.in_channels(), "SmallCnn");
  at::Tensor x = at::max_pool2d(at::relu(run_layer(conv1, images)), 2);
  x = at::max_pool2d(at::relu(run_layer(conv2, x)), 2);
  x = at::relu(run_layer(conv3, x)).mean({2, 3});
  return run_layer(classifier, x);
}

at::Tensor image_classifier_forward(torch::nn::Module& model, const at::Tensor& images) {
  if (auto* efficientnet = dynamic_cast<EfficientNetImpl*>(&model)) return efficientnet->forward(images);
  if (auto* cnn = dynamic_cast<SmallCnnImpl*>(&model)) return cnn->forward(images);
  throw Error("not an image classifier: " + model.name());
}

}  // namespace qnoise
