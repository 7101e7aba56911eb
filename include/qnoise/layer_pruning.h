#pragma once
// LayerDrop's structured pruning (Fan et al. 2020, used with Quant-Noise in the paper's Table 2):
// a Transformer trained with LayerDrop keeps working when whole layers are removed, so every k-th
// depth (0, k, 2k, ...) is kept and the others dropped. The result is a smaller model of its own
// (fewer layers in its configuration, only the kept layers' weights), which trains, quantizes and
// ships like any other.
#include <cstdint>
#include <memory>

#include <nlohmann/json.hpp>

#include "qnoise/training_task.h"

namespace qnoise {

// The configuration of `config`'s model with every keep_every-th layer kept: "layers" becomes
// ceil(layers / keep_every), and the sharing (share_every, share_cycle) the one with the fewest
// distinct layers under which two kept depths share a layer exactly when they did before (4 layers
// shared in a cycle 0 1 0 1, keeping 0 and 2: one layer, half the bytes). Throws qnoise::Error for
// tasks without a Transformer stack, keep_every < 1, or kept depths whose sharing no such
// configuration describes.
nlohmann::json pruned_task_config(const nlohmann::json& config, int64_t keep_every);

// A new task with the pruned configuration, holding `trained`'s weights for the kept layers (and
// every weight outside the stack), in eval mode.
std::unique_ptr<TrainingTask> prune_layers(TrainingTask& trained, int64_t keep_every);

}  // namespace qnoise
