#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/transformer_lm.h"

using namespace qnoise;

namespace {

TransformerLmOptions tiny(bool adaptive, int64_t layers = 2) {
  auto options = TransformerLmOptions(50, 32, 4, 64, layers).dropout(0.0).max_positions(64);
  if (adaptive) options.adaptive_input(true).adaptive_softmax(true).cutoffs({10, 30}).adaptive_factor(2);
  return options;
}

}  // namespace

TEST(TransformerLm, ShapesAndCausality) {
  for (bool adaptive : {false, true}) {
    torch::manual_seed(0);
    TransformerLm lm(tiny(adaptive));
    lm->eval();
    auto tokens = torch::randint(0, 50, {3, 7});
    EXPECT_EQ(lm->forward(tokens).sizes(), (std::vector<int64_t>{3, 7, 32}));
    EXPECT_EQ(lm->log_probs(tokens).sizes(), (std::vector<int64_t>{3, 50}));
    auto changed = tokens.clone();
    changed.select(1, 6).fill_(7);
    changed.select(1, 5).fill_(45);
    auto a = lm->output_log_probs(lm->forward(tokens)), b = lm->output_log_probs(lm->forward(changed));
    EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 5), b.narrow(1, 0, 5), 1e-5, 1e-5)) << adaptive;
    EXPECT_FALSE(torch::allclose(a.narrow(1, 5, 2), b.narrow(1, 5, 2))) << adaptive;
  }
}

TEST(TransformerLm, LogProbsNormaliseAndLossIsTheirMean) {
  for (bool adaptive : {false, true}) {
    for (bool tie : {true, false}) {
      torch::manual_seed(1);
      TransformerLm lm(tiny(adaptive).tie_weights(tie));
      lm->eval();
      auto tokens = torch::randint(0, 50, {2, 9}), targets = torch::randint(0, 50, {2, 9});
      targets[0][0] = 0; targets[0][1] = 9; targets[0][2] = 10; targets[0][3] = 29; targets[0][4] = 30; targets[0][5] = 49;
      auto lp = lm->output_log_probs(lm->forward(tokens));
      EXPECT_EQ(lp.sizes(), (std::vector<int64_t>{2, 9, 50}));
      EXPECT_LT((lp.exp().sum(-1) - 1).abs().max().item<double>(), 1e-4);
      auto expected = -lp.gather(2, targets.unsqueeze(2)).mean();
      EXPECT_NEAR(lm->loss(tokens, targets).item<double>(), expected.item<double>(), 1e-5);
      EXPECT_TRUE(torch::allclose(lm->log_probs(tokens), lp.select(1, 8), 1e-5, 1e-5));
    }
  }
}

TEST(TransformerLm, CachedDecodingEqualsTheWholeSequence) {
  for (const bool adaptive : {false, true}) {
    torch::manual_seed(7);
    TransformerLm lm(tiny(adaptive, 3));
    lm->decoder->set_kept_layers({0, 2});  // pruned stacks decode with the layers they keep
    lm->eval();
    torch::NoGradGuard no_grad;
    const auto tokens = torch::randint(0, 50, {2, 12}, torch::kLong);
    DecoderCache cache;
    // A 5-token prompt, then one token at a time.
    auto step = lm->log_probs_cached(tokens.narrow(1, 0, 5), cache);
    EXPECT_TRUE(torch::allclose(step, lm->log_probs(tokens.narrow(1, 0, 5)), 1e-5, 1e-5)) << adaptive;
    for (int64_t t = 5; t < 12; ++t) {
      step = lm->log_probs_cached(tokens.narrow(1, t, 1), cache);
      EXPECT_TRUE(torch::allclose(step, lm->log_probs(tokens.narrow(1, 0, t + 1)), 1e-5, 1e-5)) << adaptive << t;
    }
    EXPECT_EQ(cache.length, 12);
    EXPECT_EQ(cache.layers.size(), 2u);
    EXPECT_THROW(lm->log_probs_cached(torch::zeros({2, 60}, torch::kLong), cache), Error);  // past max_positions
  }
}

TEST(TransformerLm, TiedWeightsAreOneTensor) {
  torch::manual_seed(2);
  TransformerLm plain(tiny(false));
  EXPECT_FALSE(plain->output);
  // Input ids only 3, target only 4: the gradient on row 4 comes from the output layer.
  auto tokens = torch::full({1, 4}, 3, torch::kLong), targets = torch::full({1, 4}, 4, torch::kLong);
  plain->loss(tokens, targets).backward();
  EXPECT_GT(plain->embed->weight.grad()[4].abs().sum().item<double>(), 0);

  TransformerLm adaptive(tiny(true));
  ASSERT_TRUE(adaptive->adaptive_softmax->tied());
  EXPECT_EQ(adaptive->adaptive_softmax->parameters().size(), 1u);  // only "cluster"
  // Tail targets, head inputs: the tail embeddings and projections only get output gradient.
  auto tail_targets = torch::tensor({{12, 40, 45, 20}}, torch::kLong);
  adaptive->loss(tokens, tail_targets).backward();
  for (int band : {1, 2}) {
    EXPECT_GT(adaptive->adaptive_input->embeddings[band]->weight.grad().abs().sum().item<double>(), 0);
    EXPECT_GT(adaptive->adaptive_input->projections[band]->weight.grad().abs().sum().item<double>(), 0);
  }
  // Changing the tied tensor changes the output distribution of its band.
  adaptive->eval();
  auto before = adaptive->log_probs(tokens);
  {
    torch::NoGradGuard no_grad;
    auto& w = adaptive->adaptive_input->embeddings[2]->weight;
    w.add_(torch::randn_like(w));
  }
  auto after = adaptive->log_probs(tokens);
  EXPECT_FALSE(torch::allclose(before.narrow(1, 30, 20), after.narrow(1, 30, 20)));

  TransformerLm untied(tiny(true).tie_weights(false));
  EXPECT_GT(count_parameters(*untied), count_parameters(*adaptive));
}

TEST(TransformerLm, GradientReachesEveryParameter) {
  for (bool adaptive : {false, true}) {
    torch::manual_seed(3);
    TransformerLm lm(tiny(adaptive).learned_positions(true));
    auto tokens = torch::arange(1, 49).view({2, 24}), targets = torch::arange(2, 50).view({2, 24});
    lm->loss(tokens, targets).backward();
    for (const auto& p : lm->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
    }
  }
}

TEST(TransformerLm, LayerDropAndSharing) {
  EXPECT_EQ(count_parameters(*TransformerLm(tiny(true, 4).share_every(2))), count_parameters(*TransformerLm(tiny(true, 2))));
  TransformerLm lm(tiny(false, 4).layer_drop(1.0));
  lm->train();
  lm->forward(torch::randint(0, 50, {1, 5}));
  EXPECT_EQ(lm->decoder->layers_run(), 0);
  lm->eval();
  lm->decoder->set_kept_layers({0, 2});
  lm->forward(torch::randint(0, 50, {1, 5}));
  EXPECT_EQ(lm->decoder->layers_run(), 2);
}

TEST(TransformerLm, NoisyLayersAttach) {
  torch::manual_seed(4);
  TransformerLm lm(tiny(true));
  NoisyLayers noisy(*lm, {{"*.fc1", 0.1, 8, NoiseFunction::pq()},
                          {"*.attn.*", 0.1, 4, NoiseFunction::pq()},
                          {"adaptive_input.embeddings.*", 0.1, 4, NoiseFunction::pq()}});
  EXPECT_EQ(noisy.layers().size(), 2u + 8u + 3u);
  TransformerLm plain(tiny(false));
  NoisyLayers plain_noisy(*plain, {{"embed", 0.1, 8, NoiseFunction::pq()}});
  EXPECT_EQ(plain_noisy.layers().size(), 1u);
  auto tokens = torch::randint(0, 50, {2, 8});
  torch::Tensor loss;
  {
    auto scope = noisy.draw();
    loss = lm->loss(tokens, tokens);
  }
  loss.backward();
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
}

TEST(TransformerLm, BadOptionsThrow) {
  EXPECT_THROW(TransformerLm(TransformerLmOptions(50, 30, 4, 64, 2)), Error);
  EXPECT_THROW(TransformerLm(tiny(true).cutoffs({30, 10})), Error);
  EXPECT_THROW(TransformerLm(tiny(true).cutoffs({10, 10})), Error);
  EXPECT_THROW(TransformerLm(tiny(true).cutoffs({10, 50})), Error);
  EXPECT_THROW(TransformerLm(tiny(true).cutoffs({})), Error);
  EXPECT_THROW(TransformerLm(tiny(false).layers(0)), Error);
  TransformerLm lm(tiny(true));
  EXPECT_THROW(lm->forward(torch::zeros({1, 65}, torch::kLong)), Error);
  EXPECT_THROW(lm->loss(torch::zeros({1, 4}, torch::kLong), torch::full({1, 4}, 50, torch::kLong)), Error);
}

TEST(TransformerLm, OverfitsARepeatedSequence) {
  for (bool adaptive : {false, true}) {
    torch::manual_seed(5);
    TransformerLm lm(tiny(adaptive));
    torch::optim::Adam adam(lm->parameters(), torch::optim::AdamOptions(3e-3));
    auto pattern = torch::tensor({5, 12, 3, 33, 8, 41, 17, 9}, torch::kLong);
    auto stream = pattern.repeat({5});
    auto tokens = stream.narrow(0, 0, 32).unsqueeze(0).repeat({4, 1});
    auto targets = stream.narrow(0, 1, 32).unsqueeze(0).repeat({4, 1});
    double first = 0, last = 0;
    for (int step = 0; step < 40; ++step) {
      adam.zero_grad();
      auto loss = lm->loss(tokens, targets);
      loss.backward();
      adam.step();
      (step == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_GT(first, 0.7 * std::log(50.0)) << adaptive;
    EXPECT_LT(last, 0.5) << adaptive;
  }
}
