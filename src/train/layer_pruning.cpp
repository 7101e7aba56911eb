#include "qnoise/layer_pruning.h"

#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/module.h>

#include <regex>
#include <string>

#include "qnoise/error.h"

namespace qnoise {

namespace {

int64_t share_every_of(const nlohmann::json& model) { return model.value("share_every", int64_t{1}); }

}  // namespace

nlohmann::json pruned_task_config(const nlohmann::json& config, int64_t keep_every) {
  nlohmann::json pruned = complete_task_config(config);
  const std::string kind = pruned.value("task", std::string());
  QNOISE_CHECK(kind == "lm" || kind == "pairs", "layer pruning: only Transformer models (lm, pairs) have layers to "
               "prune; this is a '", kind, "' model");
  QNOISE_CHECK(keep_every >= 1, "layer pruning: keep every N-th layer needs N >= 1, got ", keep_every);
  auto& model = pruned.at("model");
  const int64_t layers = model.at("layers").get<int64_t>();
  const int64_t share = share_every_of(model);
  // Kept depths either split each shared group evenly (share a multiple of keep_every) or fall in
  // distinct groups (keep_every a multiple of share); otherwise groups would keep different counts.
  QNOISE_CHECK(share % keep_every == 0 || keep_every % share == 0, "layer pruning: layers are shared in groups of ",
               share, ", which keeping one layer in ", keep_every, " would split unevenly; keep one in a divisor or "
               "a multiple of ", share);
  model["layers"] = (layers + keep_every - 1) / keep_every;
  model["share_every"] = share % keep_every == 0 ? share / keep_every : 1;
  return pruned;
}

std::unique_ptr<TrainingTask> prune_layers(TrainingTask& trained, int64_t keep_every) {
  const nlohmann::json old_config = complete_task_config(trained.config());
  auto pruned = make_training_task(pruned_task_config(old_config, keep_every));
  const int64_t old_share = share_every_of(old_config.at("model"));
  const int64_t new_share = share_every_of(pruned->config().at("model"));

  // "<stack>.layers.<unique>.<rest>": the pruned stack's unique layer u runs first at new depth
  // u * new_share, which was depth u * new_share * keep_every, run by old unique layer depth / old_share.
  static const std::regex stack_layer(R"(^((?:decoder|encoder)\.layers\.)(\d+)(\..*)$)");
  auto old_name = [&](const std::string& name) {
    std::smatch match;
    if (!std::regex_match(name, match, stack_layer)) return name;
    const int64_t unique = std::stoll(match[2].str());
    return match[1].str() + std::to_string(unique * new_share * keep_every / old_share) + match[3].str();
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
