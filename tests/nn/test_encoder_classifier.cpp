#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/encoder_classifier.h"
#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/transformer_lm.h"

using namespace qnoise;

namespace {

EncoderClassifierOptions tiny() { return EncoderClassifierOptions(40, 32, 4, 64, 2, 3).dropout(0.0).max_positions(32); }
PairEncoding encoding(int64_t max_length = 32) { return {/*cls*/ 1, /*sep*/ 2, /*pad*/ 0, max_length}; }

}  // namespace

TEST(EncodePairs, LayoutPaddingAndTruncation) {
  auto batch = encode_pairs({{{10, 11, 12}, {20}}, {{13}, {21, 22}}}, encoding());
  EXPECT_TRUE(torch::equal(batch.tokens, torch::tensor({{1, 10, 11, 12, 2, 20, 2}, {1, 13, 2, 21, 22, 2, 0}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch.segments, torch::tensor({{0, 0, 0, 0, 0, 1, 1}, {0, 0, 0, 1, 1, 1, 0}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch.lengths, torch::tensor({7, 6}, torch::kLong)));
  // max_length 8 leaves 5 sentence tokens: the longer sentence loses tokens first.
  auto cut = encode_pairs({{{10, 11, 12, 13, 14, 15}, {20, 21}}}, encoding(8));
  EXPECT_TRUE(torch::equal(cut.tokens, torch::tensor({{1, 10, 11, 12, 2, 20, 21, 2}}, torch::kLong)));
  EXPECT_THROW(encode_pairs({}, encoding()), Error);
  EXPECT_THROW(encode_pairs({{{1}, {2}}}, encoding(4)), Error);
}

TEST(EncoderClassifier, ShapesPaddingAndBidirectionality) {
  torch::manual_seed(0);
  EncoderClassifier model(tiny());
  model->eval();
  auto batch = encode_pairs({{{10, 11, 12}, {20}}, {{13}, {21, 22}}}, encoding());
  auto logits = model->forward(batch.tokens, batch.segments);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 3}));
  // The second pair alone (no padding) gives the same logits as inside the padded batch.
  auto alone = encode_pairs({{{13}, {21, 22}}}, encoding());
  EXPECT_TRUE(torch::allclose(model->forward(alone.tokens, alone.segments), logits[1].unsqueeze(0), 1e-5, 1e-5));
  // Bidirectional: the last token changes the <cls> output.
  auto changed = batch.tokens.clone();
  changed[0][5] = 30;
  EXPECT_FALSE(torch::allclose(model->forward(changed, batch.segments)[0], logits[0]));
  EXPECT_EQ(model->forward(batch.tokens).sizes(), (std::vector<int64_t>{2, 3}));
}

TEST(EncoderClassifier, GradientsNoiseAndSharing) {
  torch::manual_seed(1);
  EncoderClassifier model(tiny());
  NoisyLayers noisy(*model, {{"*.fc1", 0.1, 8, NoiseFunction::pq()}, {"*.attn.*", 0.1, 4, NoiseFunction::pq()},
                             {"tokens", 0.1, 8, NoiseFunction::pq()}});
  EXPECT_EQ(noisy.layers().size(), 2u + 8u + 1u);
  auto batch = encode_pairs({{{10, 11, 12}, {20}}, {{13}, {21, 22}}}, encoding());
  torch::Tensor loss;
  {
    auto scope = noisy.draw();
    loss = torch::nn::functional::cross_entropy(model->forward(batch.tokens, batch.segments), torch::tensor({0, 2}));
  }
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
  EXPECT_EQ(count_parameters(*EncoderClassifier(tiny().layers(4).share_every(2))), count_parameters(*model));
}

TEST(EncoderClassifier, LearnsAToyPairTask) {
  // Label = whether the hypothesis repeats the premise's first token.
  torch::manual_seed(2);
  EncoderClassifier model(EncoderClassifierOptions(40, 32, 4, 64, 2, 2).dropout(0.0).max_positions(32));
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> pairs;
  std::vector<int64_t> labels;
  for (int i = 0; i < 32; ++i) {
    int64_t a = 5 + i % 30, b = 5 + (i * 7 + 3) % 30;
    bool same = i % 2 == 0;
    pairs.push_back({{a, 4 + i % 3}, {same ? a : (b == a ? a % 30 + 6 : b)}});
    labels.push_back(same);
  }
  auto batch = encode_pairs(pairs, encoding());
  auto y = torch::tensor(labels);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(2e-3));
  double loss_value = 0;
  for (int step = 0; step < 60; ++step) {
    adam.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(batch.tokens, batch.segments), y);
    loss.backward();
    adam.step();
    loss_value = loss.item<double>();
  }
  EXPECT_LT(loss_value, 0.3);
}

TEST(EncoderClassifier, BadOptionsThrow) {
  EXPECT_THROW(EncoderClassifier(EncoderClassifierOptions(40, 30, 4, 64, 2, 3)), Error);
  EXPECT_THROW(EncoderClassifier(tiny().num_classes(0)), Error);
  EncoderClassifier model(tiny());
  EXPECT_THROW(model->forward(torch::ones({1, 33}, torch::kLong)), Error);
  EXPECT_THROW(model->forward(torch::ones({1, 4}, torch::kLong), torch::zeros({1, 5}, torch::kLong)), Error);
}
