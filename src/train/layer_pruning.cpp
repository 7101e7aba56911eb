#include "qnoise/layer_pruning.h"

#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/transformer.h"

namespace qnoise {

namespace {

struct Sharing {
  int64_t layers = 1, share_every = 1;
  bool cycle = false;
};

Sharing sharing_of(const nlohmann::json& model) {
  return {model.at("layers").get<int64_t>(), model.value("share_every", int64_t{1}), model.value("share_cycle", false)};
}

// The distinct layer of the trained stack that each kept depth (0, k, 2k, ...) runs.
std::vector<int64_t> kept_layers_source(const Sharing& trained, int64_t keep_every) {
  const std::vector<int64_t> schedule = sharing_schedule(trained.layers, trained.share_every, trained.cycle);
  std::vector<int64_t> source;
  for (int64_t depth = 0; depth < trained.layers; depth += keep_every) source.push_back(schedule[depth]);
  return source;
}

// The sharing of the pruned stack with the fewest distinct layers (the trained one's pattern first
// on ties) under which two kept depths share a layer exactly when they did in the trained stack.
std::optional<Sharing> pruned_sharing(const Sharing& trained, const std::vector<int64_t>& source) {
  const auto layers = static_cast<int64_t>(source.size());
  std::optional<Sharing> best;
  int64_t best_unique = 0;
  for (bool cycle : {trained.cycle, !trained.cycle}) {
    for (int64_t share_every = 1; share_every <= layers; ++share_every) {
      const std::vector<int64_t> schedule = sharing_schedule(layers, share_every, cycle);
      bool same = true;
      for (int64_t a = 0; a < layers && same; ++a)
        for (int64_t b = 0; b < a && same; ++b) same = (schedule[a] == schedule[b]) == (source[a] == source[b]);
      const int64_t unique = *std::max_element(schedule.begin(), schedule.end()) + 1;
      if (same && (!best || unique < best_unique)) best = Sharing{layers, share_every, cycle}, best_unique = unique;
    }
  }
  return best;
}

}  // namespace

nlohmann::json pruned_task_config(const nlohmann::json& config, int64_t keep_every) {
  nlohmann::json pruned = complete_task_config(config);
  const std::string kind = pruned.value("task", std::string());
  QNOISE_CHECK(kind == "lm" || kind == "pairs", "layer pruning: only Transformer models (lm, pairs) have layers to "
               "prune; this is a '", kind, "' model");
  QNOISE_CHECK(keep_every >= 1, "layer pruning: keep every N-th layer needs N >= 1, got ", keep_every);
  auto& model = pruned.at("model");
  const Sharing trained = sharing_of(model);
  const std::optional<Sharing> kept = pruned_sharing(trained, kept_layers_source(trained, keep_every));
  QNOISE_CHECK(kept.has_value(), "layer pruning: keeping one layer in ", keep_every, " of ", trained.layers,
               " layers shared ", trained.cycle ? "in a cycle" : "in groups", " of ", trained.share_every,
               " leaves shared layers that no grouping of the kept ones describes; keep one in a divisor or a "
               "multiple of ", trained.share_every);
  model["layers"] = kept->layers;
  model["share_every"] = kept->share_every;
  model["share_cycle"] = kept->cycle;
  return pruned;
}

std::unique_ptr<TrainingTask> prune_layers(TrainingTask& trained, int64_t keep_every) {
  const nlohmann::json old_config = complete_task_config(trained.config());
  auto pruned = make_training_task(pruned_task_config(old_config, keep_every));
  // Each distinct layer of the pruned stack copies the trained layer its first depth ran.
  const std::vector<int64_t> ran = kept_layers_source(sharing_of(old_config.at("model")), keep_every);
  const Sharing kept = sharing_of(pruned->config().at("model"));
  const std::vector<int64_t> schedule = sharing_schedule(kept.layers, kept.share_every, kept.cycle);
  std::map<int64_t, int64_t> old_layer;
  for (size_t depth = 0; depth < schedule.size(); ++depth) old_layer.emplace(schedule[depth], ran[depth]);

  // "<stack>.layers.<unique>.<rest>" of the pruned model reads the trained model's "<stack>.layers.<old>.<rest>".
  static const std::regex stack_layer(R"(^((?:decoder|encoder)\.layers\.)(\d+)(\..*)$)");
  auto old_name = [&](const std::string& name) {
    std::smatch match;
    if (!std::regex_match(name, match, stack_layer)) return name;
    return match[1].str() + std::to_string(old_layer.at(std::stoll(match[2].str()))) + match[3].str();
  };

  torch::NoGradGuard no_grad;
  const auto old_parameters = trained.model().named_parameters();
  const auto old_buffers = trained.model().named_buffers();
  auto copy_from = [&](const torch::OrderedDict<std::string, at::Tensor>& source, const std::string& name,
                       at::Tensor& target) {
    const std::string from = old_name(name);
    const at::Tensor* value = source.find(from);
    QNOISE_CHECK(value != nullptr, "layer pruning: the trained model has no tensor '", from, "' for '", name, "'");
    QNOISE_CHECK(value->sizes() == target.sizes(), "layer pruning: '", from, "' has shape ", value->sizes(),
                 ", the pruned model's '", name, "' ", target.sizes());
    target.copy_(*value);
  };
  for (auto& item : pruned->model().named_parameters()) copy_from(old_parameters, item.key(), item.value());
  for (auto& item : pruned->model().named_buffers()) copy_from(old_buffers, item.key(), item.value());
  pruned->model().eval();
  return pruned;
}

}  // namespace qnoise
