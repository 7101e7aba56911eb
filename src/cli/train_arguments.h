#pragma once
// `qnoise train`'s command line read into what a run needs, without running it: the task
// configuration and the trainer's options. fairseq's flag names are accepted where qnoise's
// differ (docs/fairseq.md): --max-update, --max-epoch, --warmup-updates, --lr-scheduler,
// --encoder-layerdrop / --decoder-layerdrop, --save-dir.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "qnoise/trainer.h"

namespace qnoise::cli {

struct TrainArguments {
  nlohmann::json config;   // complete_task_config's: every key of the task, defaults filled in
  TrainerOptions trainer;  // checkpoint_path from --out, or --save-dir's checkpoint_last.pt
};

// `arguments`: what follows `qnoise train`, e.g. {"--task", "lm", "--max-update", "100"}. Throws
// qnoise::Error on unknown options, bad values, and flags for one setting that disagree.
TrainArguments parse_train_arguments(std::vector<std::string> arguments);

}  // namespace qnoise::cli
