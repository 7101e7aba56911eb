#pragma once
// Image classifiers for small images (Fashion-MNIST: 1x28x28, 10 classes): an EfficientNet-style
// CNN of MBConv blocks, and a tiny CNN for fast tests. Every weight lives in a torch::nn::Conv2d or
// torch::nn::Linear with a stable name, so Quant-Noise (NoisyLayers) and PQ attach by name:
//
//   stem.conv                     3x3 conv, in_channels -> stem channels (BN: stem.bn)
//   stages.S.B.expand             1x1 expansion conv (absent when the stage's expand ratio is 1)
//   stages.S.B.depthwise          kxk depthwise conv (groups = channels): row length k*k
//   stages.S.B.se.reduce          1x1 squeeze-excitation convs (with bias)
//   stages.S.B.se.expand
//   stages.S.B.project            1x1 projection conv
//   head.conv                     1x1 conv to the head channels (BN: head.bn)
//   classifier                    Linear head channels -> n_classes
//
// Channel counts are rounded to multiples of 8 (as EfficientNet does), so every 1x1 conv and the
// classifier take PQ blocks of 4 or 8; 3x3 depthwise convs take blocks of 9 (one whole kernel).
//
//   qnoise::NoisyLayers noisy(*model, {{"*.expand", 0.1, 8, qnoise::NoiseFunction::pq()},
//                                      {"*.project", 0.1, 8, qnoise::NoiseFunction::pq()},
//                                      {"*.depthwise", 0.1, 9, qnoise::NoiseFunction::pq()},
//                                      {"classifier", 0.1, 8, qnoise::NoiseFunction::pq()}});
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qnoise {

// One stage of MBConv blocks, before width/depth scaling. Only the first block of a stage strides.
struct MBConvStage {
  int64_t expand_ratio = 4;  // expanded channels = input channels * expand_ratio (1: no expand conv)
  int64_t kernel_size = 3;   // depthwise kernel, odd
  int64_t stride = 1;        // 1 or 2
  int64_t out_channels = 16;
  int64_t repeats = 1;
};

struct EfficientNetOptions {
  EfficientNetOptions() = default;

  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, n_classes) = 10;
  TORCH_ARG(double, width_multiplier) = 1.0;  // scales every channel count (rounded to 8)
  TORCH_ARG(double, depth_multiplier) = 1.0;  // scales every stage's repeats (rounded up)
  TORCH_ARG(int64_t, stem_channels) = 16;
  TORCH_ARG(int64_t, stem_stride) = 2;  // 28x28 -> 14x14: depthwise convs are slow on CPU
  TORCH_ARG(int64_t, head_channels) = 256;
  TORCH_ARG(double, se_ratio) = 0.25;  // squeeze channels = block input channels * se_ratio; 0: no SE
  TORCH_ARG(double, dropout) = 0.2;    // before the classifier
  TORCH_ARG(std::vector<MBConvStage>, stages) = default_stages();

  // Sized for 28x28 inputs and CPU training: the stem halves them to 14x14, then stages of
  // 16-24-40-80 channels at 14, 7, 7 and 4 pixels, 7 blocks.
  static std::vector<MBConvStage> default_stages();
};

// Rounds `channels * multiplier` to the nearest multiple of `divisor`, never below `divisor` nor
// more than 10% below the unrounded value (EfficientNet's make_divisible).
int64_t round_channels(double channels, double multiplier, int64_t divisor = 8);

// Conv2d (no bias) + BatchNorm2d + optional SiLU: "conv", "bn".
class ConvBnActImpl : public torch::nn::Module {
 public:
  ConvBnActImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
                int64_t groups = 1, bool activation = true);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  bool activation;
};
TORCH_MODULE(ConvBnAct);

// Squeeze-excitation: x * sigmoid(expand(silu(reduce(mean over H, W of x)))), with 1x1 convs.
class SqueezeExcitationImpl : public torch::nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Conv2d reduce{nullptr};
  torch::nn::Conv2d expand{nullptr};
};
TORCH_MODULE(SqueezeExcitation);

// MBConv: [1x1 expand + BN + SiLU] -> kxk depthwise + BN + SiLU -> [SE] -> 1x1 project + BN,
// plus the input when stride is 1 and channels match.
class MBConvBlockImpl : public torch::nn::Module {
 public:
  MBConvBlockImpl(int64_t in_channels, int64_t out_channels, int64_t expand_ratio,
                  int64_t kernel_size, int64_t stride, int64_t squeeze_channels);
  at::Tensor forward(const at::Tensor& x);

  bool has_residual() const { return residual_; }
  bool has_expand() const { return !expand.is_empty(); }
  bool has_se() const { return !se.is_empty(); }

  torch::nn::Conv2d expand{nullptr};
  torch::nn::BatchNorm2d expand_bn{nullptr};
  torch::nn::Conv2d depthwise{nullptr};
  torch::nn::BatchNorm2d depthwise_bn{nullptr};
  SqueezeExcitation se{nullptr};
  torch::nn::Conv2d project{nullptr};
  torch::nn::BatchNorm2d project_bn{nullptr};

 private:
  bool residual_;
};
TORCH_MODULE(MBConvBlock);

class EfficientNetImpl : public torch::nn::Module {
 public:
  // Throws qnoise::Error for non-positive multipliers, channel counts or repeats, an even or
  // non-positive kernel, a stride other than 1 or 2, an se_ratio outside [0, 1] or a dropout
  // outside [0, 1).
  explicit EfficientNetImpl(EfficientNetOptions options = {});

  // [batch, in_channels, H, W] -> logits [batch, n_classes]. Throws qnoise::Error on a wrong shape.
  at::Tensor forward(const at::Tensor& images);

  const EfficientNetOptions& options() const { return options_; }
  // The block at stages.<stage>.<index>.
  MBConvBlock block(size_t stage, size_t index) const;
  size_t n_stages() const { return stages->size(); }
  size_t n_blocks(size_t stage) const;

  ConvBnAct stem{nullptr};
  torch::nn::ModuleList stages{nullptr};  // of ModuleList of MBConvBlock
  ConvBnAct head{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};

 private:
  EfficientNetOptions options_;
};
TORCH_MODULE(EfficientNet);

// A small plain CNN for fast tests: conv1 (3x3) -> pool -> conv2 (3x3) -> pool -> conv3 (1x1) ->
// global average -> classifier. Channels are multiples of 8. Names: "conv1", "conv2", "conv3",
// "classifier".
struct SmallCnnOptions {
  SmallCnnOptions() = default;
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, n_classes) = 10;
  TORCH_ARG(int64_t, channels) = 16;  // conv1; conv2 and conv3 use twice as many
};

class SmallCnnImpl : public torch::nn::Module {
 public:
  explicit SmallCnnImpl(SmallCnnOptions options = {});
  at::Tensor forward(const at::Tensor& images);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::Conv2d conv3{nullptr};
  torch::nn::Linear classifier{nullptr};

 private:
  SmallCnnOptions options_;
};
TORCH_MODULE(SmallCnn);

// Logits of an image classifier held as a plain module (an EfficientNet or a SmallCnn, as the
// image task and the .qnz loader build them). Throws qnoise::Error for another module.
at::Tensor image_classifier_forward(torch::nn::Module& model, const at::Tensor& images);

}  // namespace qnoise
