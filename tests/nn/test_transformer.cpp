#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/transformer.h"
#include "qnoise/transformer_lm.h"

using namespace qnoise;

namespace {

TransformerLayerOptions small_layer() { return TransformerLayerOptions(16, 4, 32).dropout(0.0); }

TransformerStack make_stack(int64_t depth, int64_t share_every = 1, double layer_drop = 0.0) {
  return TransformerStack(TransformerStackOptions(small_layer(), depth).share_every(share_every).layer_drop(layer_drop));
}

}  // namespace

TEST(Transformer, AttentionShapesAndNames) {
  torch::manual_seed(0);
  MultiheadSelfAttention attn(MultiheadSelfAttentionOptions(16, 4));
  auto y = attn->forward(torch::randn({3, 5, 16}), true);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 5, 16}));
  std::vector<std::string> names;
  for (const auto& item : attn->named_modules("", false)) names.push_back(item.key());
  EXPECT_EQ(names, (std::vector<std::string>{"q", "k", "v", "out"}));
  EXPECT_THROW(MultiheadSelfAttention(MultiheadSelfAttentionOptions(18, 4)), Error);
  EXPECT_THROW(attn->forward(torch::randn({3, 5, 8})), Error);
  EXPECT_THROW(TransformerLayer(TransformerLayerOptions(16, 4, 32).activation("tanh")), Error);
}

TEST(Transformer, CausalStackIgnoresLaterPositions) {
  torch::manual_seed(1);
  auto stack = make_stack(2);
  stack->eval();
  auto x = torch::randn({2, 6, 16});
  auto changed = x.clone();
  changed.narrow(1, 4, 2).normal_();
  auto a = stack->forward(x, true), b = stack->forward(changed, true);
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 4), b.narrow(1, 0, 4), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 4, 2), b.narrow(1, 4, 2)));
  // Without the mask, earlier positions see the change.
  EXPECT_FALSE(torch::allclose(stack->forward(x).narrow(1, 0, 4), stack->forward(changed).narrow(1, 0, 4)));
}

TEST(Transformer, KeyPaddingMaskHidesPaddedKeys) {
  torch::manual_seed(2);
  auto stack = make_stack(2);
  stack->eval();
  auto x = torch::randn({2, 5, 16});
  auto pad = torch::zeros({2, 5}, torch::kBool);
  pad.narrow(1, 3, 2).fill_(true);
  auto changed = x.clone();
  changed.narrow(1, 3, 2).normal_();
  auto a = stack->forward(x, false, pad), b = stack->forward(changed, false, pad);
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 3), b.narrow(1, 0, 3), 1e-5, 1e-6));
  EXPECT_THROW(stack->forward(x, false, torch::zeros({2, 4}, torch::kBool)), Error);
}

TEST(Transformer, LayerDropOneSkipsEveryLayerInTraining) {
  torch::manual_seed(3);
  auto stack = make_stack(3, 1, 1.0);
  stack->train();
  auto x = torch::randn({2, 4, 16});
  auto y = stack->forward(x, true);
  EXPECT_EQ(stack->layers_run(), 0);
  EXPECT_TRUE(torch::allclose(y, stack->norm->forward(x)));
  stack->eval();  // inference runs every layer whatever the drop rate
  stack->forward(x, true);
  EXPECT_EQ(stack->layers_run(), 3);
}

TEST(Transformer, LayerDropHalfSkipsAboutHalf) {
  torch::manual_seed(4);
  auto stack = make_stack(4, 1, 0.5);
  auto x = torch::randn({1, 2, 16});
  int64_t total = 0;
  for (int i = 0; i < 200; ++i) {
    stack->forward(x);
    total += stack->layers_run();
  }
  EXPECT_NEAR(total / 800.0, 0.5, 0.08);
}

TEST(Transformer, KeptLayersRunOnlyThoseDepths) {
  torch::manual_seed(5);
  auto stack = make_stack(4);
  stack->eval();
  stack->set_kept_layers({2, 0});
  EXPECT_EQ(stack->kept_layers(), (std::vector<int64_t>{0, 2}));
  auto x = torch::randn({2, 4, 16});
  auto y = stack->forward(x, true);
  EXPECT_EQ(stack->layers_run(), 2);
  auto layer = [&](int i) { return stack->layers[i]->as<TransformerLayerImpl>(); };
  auto expected = stack->norm->forward(layer(2)->forward(layer(0)->forward(x, true), true));
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-6));
  stack->train();  // training ignores the pruning
  stack->forward(x);
  EXPECT_EQ(stack->layers_run(), 4);
  EXPECT_THROW(stack->set_kept_layers({4}), Error);
  EXPECT_THROW(stack->set_kept_layers({1, 1}), Error);
}

TEST(Transformer, WeightSharingRegistersEachLayerOnce) {
  auto shared = make_stack(4, 2), plain = make_stack(2);
  EXPECT_EQ(count_parameters(*shared), count_parameters(*plain));
  EXPECT_EQ(shared->parameters().size(), plain->parameters().size());
  EXPECT_EQ(shared->schedule(), (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(shared->layers->size(), 2u);
  int64_t fc1 = 0;
  for (const auto& item : shared->named_modules()) fc1 += glob_match("*.fc1", item.key());
  EXPECT_EQ(fc1, 2);
  // Depth 4 with sharing = each unique layer applied twice.
  shared->eval();
  auto x = torch::randn({1, 3, 16});
  auto l0 = shared->layers[0]->as<TransformerLayerImpl>(), l1 = shared->layers[1]->as<TransformerLayerImpl>();
  auto expected = shared->norm->forward(l1->forward(l1->forward(l0->forward(l0->forward(x)))));
  EXPECT_TRUE(torch::allclose(shared->forward(x), expected, 1e-5, 1e-6));
  EXPECT_EQ(make_stack(3, 2)->layers->size(), 2u);
}

TEST(Transformer, NoisyLayersFindAttentionAndFfn) {
  auto stack = make_stack(2);
  NoisyLayers noisy(*stack, {{"*.fc1", 0.2, 8, NoiseFunction::pq()}, {"*.attn.*", 0.2, 4, NoiseFunction::pq()}});
  EXPECT_EQ(noisy.layers().size(), 2u + 2u * 4u);
  stack->train();
  auto x = torch::randn({2, 4, 16});
  torch::Tensor loss;
  {
    auto scope = noisy.draw();
    loss = (stack->forward(x, true) * torch::randn({2, 4, 16})).sum();
  }
  loss.backward();
  for (const auto& p : stack->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
}
