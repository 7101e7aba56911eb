// `qnoise train`'s arguments under fairseq's flag names: the same task configuration and trainer
// options as qnoise's own names, and clear errors where two names of one setting disagree.
#include <gtest/gtest.h>

#include "cli/train_arguments.h"
#include "qnoise/error.h"

namespace {

using qnoise::cli::parse_train_arguments;
using Arguments = std::vector<std::string>;

// Every setting of TrainerOptions a flag can reach, to compare two parses as a whole.
nlohmann::json trainer_settings(const qnoise::TrainerOptions& o) {
  return {{"optimizer", {static_cast<int>(o.optimizer.kind), o.optimizer.lr, o.optimizer.weight_decay, o.optimizer.momentum}},
          {"schedule", {static_cast<int>(o.schedule.kind), o.schedule.peak_lr, o.schedule.warmup_steps,
                        o.schedule.warmup_init_lr, o.schedule.total_steps, o.schedule.min_lr}},
          {"epochs", o.epochs},
          {"max_steps", o.max_steps},
          {"clip_norm", o.clip_norm},
          {"eval_every", o.eval_every},
          {"save_every", o.save_every},
          {"stop_after", o.stop_after},
          {"checkpoint_path", o.checkpoint_path},
          {"resume", o.resume},
          {"init_from", o.init_from},
          {"noise", {o.noise.pq_rate, o.noise.pq_exact, o.noise.pq_block_size, o.noise.scalar_rate, o.noise.bits,
                     o.noise.layers}}};
}

void expect_same_run(const Arguments& fairseq, const Arguments& qnoise_names) {
  const auto a = parse_train_arguments(fairseq), b = parse_train_arguments(qnoise_names);
  EXPECT_EQ(a.config, b.config) << a.config.dump() << "\n" << b.config.dump();
  EXPECT_EQ(trainer_settings(a.trainer), trainer_settings(b.trainer));
}

void expect_error(const Arguments& arguments, const std::string& message) {
  std::string joined;
  for (const auto& a : arguments) joined += a + " ";
  try {
    parse_train_arguments(arguments);
    ADD_FAILURE() << "no error for: " << joined;
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << joined << "\n" << e.what();
  }
}

}  // namespace

TEST(TrainArguments, FairseqFlagNamesGiveTheSameRunAsQnoises) {
  expect_same_run({"--task", "lm", "--max-update", "500", "--max-epoch", "3", "--warmup-updates", "40",
                   "--lr-scheduler", "inverse_sqrt", "--decoder-layerdrop", "0.2", "--save-dir", "runs/lm"},
                  {"--task", "lm", "--max-steps", "500", "--epochs", "3", "--warmup-steps", "40", "--lr-schedule",
                   "inverse-sqrt", "--layer-drop", "0.2", "--out", "runs/lm/checkpoint_last.pt"});
  expect_same_run({"--task", "pairs", "--encoder-layerdrop", "0.1", "--lr-scheduler", "fixed", "--out", "p.pt"},
                  {"--task", "pairs", "--layer-drop", "0.1", "--lr-schedule", "constant", "--out", "p.pt"});
}

TEST(TrainArguments, FairseqNamesSetWhatTheirQnoiseNamesSet) {
  const auto run = parse_train_arguments({"--task", "lm", "--max-update", "500", "--warmup-updates", "40",
                                          "--lr-scheduler", "inverse_sqrt", "--decoder-layerdrop", "0.2",
                                          "--save-dir", "runs/lm"});
  EXPECT_EQ(run.trainer.max_steps, 500);
  EXPECT_EQ(run.trainer.schedule.warmup_steps, 40);
  EXPECT_EQ(run.trainer.schedule.kind, qnoise::LrScheduleKind::InverseSqrt);
  EXPECT_EQ(run.trainer.checkpoint_path, "runs/lm/checkpoint_last.pt");
  EXPECT_DOUBLE_EQ(run.config["model"]["layer_drop"].get<double>(), 0.2);
  // Both LayerDrop names, or one with --layer-drop, may be given when they agree.
  const auto both = parse_train_arguments({"--task", "lm", "--layer-drop", "0.3", "--encoder-layerdrop", "0.3",
                                           "--decoder-layerdrop", "0.3", "--out", "x.pt"});
  EXPECT_DOUBLE_EQ(both.config["model"]["layer_drop"].get<double>(), 0.3);
}

TEST(TrainArguments, NamesOfOneSettingThatDisagreeAreErrors) {
  expect_error({"--task", "lm", "--encoder-layerdrop", "0.1", "--decoder-layerdrop", "0.2", "--out", "x.pt"},
               "--encoder-layerdrop 0.1 and --decoder-layerdrop 0.2 disagree: both set layer_drop (qnoise's lm model "
               "is a decoder and its pairs model an encoder, one Transformer stack each, with one LayerDrop rate)");
  expect_error({"--task", "lm", "--layer-drop", "0.1", "--decoder-layerdrop", "0.2", "--out", "x.pt"},
               "--layer-drop 0.1 and --decoder-layerdrop 0.2 disagree");
  expect_error({"--task", "lm", "--out", "x.pt", "--save-dir", "runs"},
               "--out 'x.pt' and --save-dir 'runs' both name the checkpoint: give one");
  expect_error({"--task", "lm"}, "--out is required: the checkpoint file (or fairseq's --save-dir DIR");
  expect_error({"--task", "lm", "--max-steps", "5", "--max-update", "6", "--out", "x.pt"}, "--max-steps");
  // The image model has no Transformer stack, whichever name asks for LayerDrop.
  expect_error({"--task", "image", "--decoder-layerdrop", "0.1", "--out", "x.pt"}, "has no option 'layer_drop'");
  expect_error({"--task", "lm", "--lr-scheduler", "polynomial_decay", "--out", "x.pt"},
               "unknown learning-rate schedule 'polynomial_decay'");
}
