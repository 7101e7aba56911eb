#include "qnoise/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/utils/clip_grad.h>

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <streambuf>

#include "qnoise/checkpoint.h"
#include "qnoise/error.h"
#include "qnoise/json_input.h"
#include "qnoise/exact_pq_noise.h"
#include "qnoise/noisy_layers.h"
#include "train/data_parallel_training.h"
#include "train/progress.h"

namespace qnoise {

namespace {

constexpr const char* kCheckpointFormat = "qnoise-checkpoint-1";

// The first key (as a JSON path) where two configurations differ, or "".
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b) {
  const auto patch = nlohmann::json::diff(a, b);
  return patch.empty() ? "" : patch.front().value("path", "");
}

void check_options(const TrainerOptions& options) {
  QNOISE_CHECK(!options.checkpoint_path.empty(), "training needs a checkpoint path (--out)");
  QNOISE_CHECK(options.epochs > 0 || options.max_steps > 0, "training needs epochs > 0 or max_steps > 0");
  QNOISE_CHECK(options.max_steps >= 0 && options.eval_every >= 0 && options.save_every >= 0 &&
                   options.stop_after >= 0,
               "max_steps, eval_every, save_every and stop_after must be >= 0");
  QNOISE_CHECK(options.clip_norm >= 0, "clip_norm must be >= 0, got ", options.clip_norm);
  if (options.device.is_cuda())
    QNOISE_CHECK(at::hasCUDA(), "--device cuda: this libtorch build has no CUDA (or no GPU is visible)");
}

// The schedule with the run's length filled in (cosine's end, the automatic warm-up), validated.
LrScheduleOptions resolved_schedule(LrScheduleOptions schedule, int64_t total_steps) {
  if (schedule.kind == LrScheduleKind::Cosine && schedule.total_steps == 0) schedule.total_steps = total_steps;
  if (schedule.warmup_steps == kAutoWarmup) schedule.warmup_steps = total_steps / 10;
  learning_rate(schedule, 0);  // validates the schedule before any work
  return schedule;
}

// The metadata object of a training checkpoint; throws naming `path` when it is not one.
nlohmann::json parse_training_metadata(const std::string& text, const std::string& path) {
  nlohmann::json stored;
  try {
    stored = parse_json_input(text, "the metadata");
  } catch (const Error&) {
    throw Error("'" + path + "' has unreadable metadata: not a qnoise training checkpoint");
  }
  QNOISE_CHECK(stored.is_object() && stored.value("format", "") == kCheckpointFormat && stored.contains("task") &&
                   stored.contains("artifacts"),
               "'", path, "' is not a qnoise training checkpoint");
  return stored;
}

// The trainer settings a resumed run may change: how long it runs, how often it evaluates and
// saves, and how its ranks communicate.
nlohmann::json settings_fixed_for_a_run(nlohmann::json settings) {
  for (const char* key : {"epochs", "max_steps", "eval_every", "save_every", "stop_after", "resume", "init_from",
                          "bucket_bytes"})
    settings.erase(key);
  return settings;
}

// The value at a JSON path of `json`, for a message ("(none)" when absent).
std::string value_at(const nlohmann::json& json, const std::string& path) {
  const nlohmann::json::json_pointer pointer(path);
  return json.contains(pointer) ? quote_json(json.at(pointer)) : "(none)";
}

// With --resume and an existing checkpoint: checks that it belongs to this task and was trained
// with these settings, then loads it (model, optimizer, generator, extras). Otherwise an empty state.
CheckpointState restore_if_resuming(TrainingTask& task, const TrainerOptions& options,
                                    torch::optim::Optimizer& optimizer) {
  if (!options.resume || !std::filesystem::exists(options.checkpoint_path)) return {};
  const std::string& path = options.checkpoint_path;
  // Compared before loading: an optimizer of another kind cannot even be loaded.
  const nlohmann::json stored = read_training_checkpoint_metadata(path);
  // Completed: options added since the checkpoint was written read as their defaults.
  const std::string difference = first_difference(complete_task_config(stored.at("task")), task.config());
  QNOISE_CHECK(difference.empty(), "cannot resume from '", path,
               "': it was trained with a different task configuration (first difference at ", difference, ")");
  if (stored.contains("trainer")) {
    const nlohmann::json then = settings_fixed_for_a_run(stored.at("trainer"));
    const nlohmann::json now = settings_fixed_for_a_run(shared_trainer_settings(options));
    const std::string changed = first_difference(then, now);
    QNOISE_CHECK(changed.empty(), "cannot resume from '", path, "': it was trained with other settings (",
                 changed, " was ", value_at(then, changed), ", now ", value_at(now, changed),
                 "); a resumed run may change only --epochs, --max-steps, --eval-every, --save-every and --stop-after");
  }
  CheckpointState state = load_checkpoint(path, task.model(), &optimizer);
  std::cerr << "resuming from '" << path << "' at step " << state.step << "\n";
  return state;
}

// Exact PQ noise: the codebooks in use, for the checkpoint (their learning step is the run's).
std::map<std::string, at::Tensor> codebooks_of(const NoisyLayers& noisy) {
  std::map<std::string, at::Tensor> out;
  for (size_t i = 0; i < noisy.targets().size(); ++i)
    out["noise_codebook." + std::to_string(i)] = noisy.targets()[i].function.codebook;
  return out;
}

// The codebooks a checkpoint stored, in place of freshly learned ones (false: it has none).
bool restore_codebooks(std::vector<NoiseTarget>& exact, const std::map<std::string, at::Tensor>& stored,
                       const std::string& path) {
  if (stored.count("noise_codebook.0") == 0) return false;
  for (size_t i = 0; i < exact.size(); ++i) {
    const auto found = stored.find("noise_codebook." + std::to_string(i));
    QNOISE_CHECK(found != stored.end() && found->second.sizes() == exact[i].function.codebook.sizes(), "'", path,
                 "' holds exact-noise codebooks that do not fit layer '", exact[i].pattern, "'");
    exact[i].function.codebook = found->second;
  }
  return true;
}

// Loads the weights of another run's checkpoint of the same model (same vocabulary and labels).
void initialize_from(TrainingTask& task, const std::string& path) {
  check_same_artifacts(task, read_training_checkpoint_metadata(path).at("artifacts"), path);
  auto generator = at::detail::getDefaultCPUGenerator();
  at::Tensor generator_state;
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator_state = generator.get_state();
  }
  load_checkpoint(path, task.model(), nullptr);  // checks every tensor's shape
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(generator_state);  // this run's random draws, not the checkpoint's
  std::cerr << "starting from the weights of '" << path << "'\n";
}

}  // namespace

nlohmann::json metrics_to_json(const std::map<std::string, SplitMetrics>& metrics) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [split, values] : metrics)
    for (const auto& [name, value] : values) out[split][name] = value;
  return out;
}

nlohmann::json read_training_checkpoint_metadata(const std::string& path) {
  std::string text;
  try {
    text = read_checkpoint_metadata(path);
  } catch (const Error& e) {
    if (!std::filesystem::exists(path)) throw;
    throw Error("'" + path + "' is not a qnoise training checkpoint (" + e.what() + ")");
  }
  return parse_training_metadata(text, path);
}

void check_same_artifacts(const TrainingTask& task, const nlohmann::json& stored_artifacts,
                          const std::string& source) {
  const std::string difference = first_difference(stored_artifacts, task.artifacts());
  QNOISE_CHECK(difference.empty(), "the data in '", task.config().value("data", std::string()),
               "' does not match the model in '", source, "' (its vocabulary, labels or normalization differ at ",
               difference, "); pass the data it was trained on");
}

std::map<std::string, SplitMetrics> evaluate_splits(TrainingTask& task, DataParallelGroup* group) {
  std::map<std::string, SplitMetrics> metrics;
  for (const auto& split : task.eval_splits()) metrics[split] = task.evaluate(split);
  return group != nullptr ? detail::combine_shard_metrics(*group, metrics, task.unit_name()) : metrics;
}

ProgressOptions::Mode parse_progress_mode(const std::string& name) {
  const std::map<std::string, ProgressOptions::Mode> modes = {{"auto", ProgressOptions::Mode::Auto},
                                                              {"bar", ProgressOptions::Mode::Bar},
                                                              {"lines", ProgressOptions::Mode::Lines},
                                                              {"off", ProgressOptions::Mode::Off}};
  const auto found = modes.find(name);
  QNOISE_CHECK(found != modes.end(), "--progress must be auto, bar, lines or off, got '", name, "'");
  return found->second;
}

std::vector<NoiseTarget> quant_noise_targets(const TrainingTask& task, const QuantNoiseOptions& noise) {
  const QuantNoiseOptions defaults;
  if (noise.pq_exact) {
    QNOISE_CHECK(noise.pq_rate > 0 && noise.pq_rate <= 1, "--pq-noise exact needs --quant-noise-pq in (0, 1], got ",
                 noise.pq_rate);
    QNOISE_CHECK(noise.codebook_refresh > 0, "--codebook-refresh must be positive, got ", noise.codebook_refresh);
    QNOISE_CHECK(noise.exact_centroids >= 1 && noise.exact_centroids <= 65536,
                 "--pq-noise-centroids must be in [1, 65536], got ", noise.exact_centroids);
    QNOISE_CHECK(noise.exact_blocks_per_centroid >= 1, "--pq-noise-blocks-per-centroid must be positive, got ",
                 noise.exact_blocks_per_centroid);
  } else {
    QNOISE_CHECK(noise.exact_centroids == defaults.exact_centroids &&
                     noise.exact_blocks_per_centroid == defaults.exact_blocks_per_centroid,
                 "--pq-noise-centroids and --pq-noise-blocks-per-centroid need --pq-noise exact");
    QNOISE_CHECK(noise.pq_rate >= 0 && noise.pq_rate < 1, "--quant-noise-pq must be in [0, 1) (rate 1 zeroes every "
                 "block; iPQ QAT is --quant-noise-pq 1 --pq-noise exact), got ", noise.pq_rate);
  }
  QNOISE_CHECK(noise.scalar_rate >= 0 && noise.scalar_rate <= 1, "--quant-noise-scalar must be in [0, 1], got ",
               noise.scalar_rate);
  QNOISE_CHECK(!(noise.pq_rate > 0 && noise.scalar_rate > 0),
               "choose one of --quant-noise-pq and --quant-noise-scalar, not both");
  QNOISE_CHECK(noise.enabled() || noise.layers.empty(),
               "--quant-noise-layers needs a noise rate (--quant-noise-pq or --quant-noise-scalar)");
  QNOISE_CHECK(!noise.per_tensor || noise.scalar_rate > 0, "--scalar-ranges tensor needs --quant-noise-scalar");
  QNOISE_CHECK(noise.activation_bits == 0 || noise.scalar_rate > 0,
               "--activation-bits needs --quant-noise-scalar (the rate at which inputs are quantized)");
  QNOISE_CHECK(noise.activation_bits == 0 || (noise.activation_bits >= 2 && noise.activation_bits <= 8),
               "--activation-bits must be in 2..8, got ", noise.activation_bits);
  if (!noise.enabled()) return {};
  const bool pq = noise.pq_rate > 0;
  const double rate = pq ? noise.pq_rate : noise.scalar_rate;
  const NoiseFunction function =
      pq ? NoiseFunction::pq()
         : NoiseFunction::fake_quant(ScalarQuantizerOptions().set_bits(noise.bits).set_per_channel(!noise.per_tensor));
  QNOISE_CHECK(noise.pq_block_size >= 0, "--quant-noise-pq-block-size must be positive, got ", noise.pq_block_size);
  const int64_t block_size = !pq ? 1 : noise.pq_block_size > 0 ? noise.pq_block_size : task.default_pq_block_size();
  std::vector<NoiseTarget> targets = noise.layers.empty() ? task.noise_targets(rate, block_size, function)
                                                          : std::vector<NoiseTarget>{{noise.layers, rate, block_size, function}};
  for (NoiseTarget& target : targets) target.activation_bits = noise.activation_bits;
  return targets;
}

QuantNoiseOptions quant_noise_options_from_json(const nlohmann::json& json) {
  QuantNoiseOptions noise;
  noise.pq_rate = json.value("pq_rate", noise.pq_rate);
  noise.pq_exact = json.value("pq_exact", noise.pq_exact);
  noise.codebook_refresh = json.value("codebook_refresh", noise.codebook_refresh);
  noise.exact_centroids = json.value("exact_centroids", noise.exact_centroids);
  noise.exact_blocks_per_centroid = json.value("exact_blocks_per_centroid", noise.exact_blocks_per_centroid);
  noise.pq_block_size = json.value("pq_block_size", noise.pq_block_size);
  noise.scalar_rate = json.value("scalar_rate", noise.scalar_rate);
  noise.bits = json.value("bits", noise.bits);
  noise.per_tensor = json.value("per_tensor", noise.per_tensor);
  noise.activation_bits = json.value("activation_bits", noise.activation_bits);
  noise.layers = json.value("layers", noise.layers);
  return noise;
}

namespace {

// The noise settings as checkpoints record them; per-tensor ranges, activation bits and exact
// noise's codebook sizes only when set, so that runs from before they existed still resume.
nlohmann::json noise_to_json(const QuantNoiseOptions& noise) {
  nlohmann::json json = {{"pq_rate", noise.pq_rate},         {"pq_exact", noise.pq_exact},
                         {"codebook_refresh", noise.codebook_refresh}, {"pq_block_size", noise.pq_block_size},
                         {"scalar_rate", noise.scalar_rate}, {"bits", noise.bits},
                         {"layers", noise.layers}};
  if (noise.per_tensor) json["per_tensor"] = true;
  if (noise.activation_bits != 0) json["activation_bits"] = noise.activation_bits;
  const QuantNoiseOptions defaults;
  if (noise.exact_centroids != defaults.exact_centroids) json["exact_centroids"] = noise.exact_centroids;
  if (noise.exact_blocks_per_centroid != defaults.exact_blocks_per_centroid)
    json["exact_blocks_per_centroid"] = noise.exact_blocks_per_centroid;
  return json;
}

}  // namespace

nlohmann::json checkpoint_metadata(const TrainingTask& task, const QuantNoiseOptions& noise,
                                   const std::map<std::string, SplitMetrics>& metrics) {
  return {{"format", kCheckpointFormat},
          {"task", task.config()},
          {"artifacts", task.artifacts()},
          {"noise", noise_to_json(noise)},
          {"metrics", metrics_to_json(metrics)}};
}

TrainerOptions default_trainer_options(const std::string& task_kind) {
  TrainerOptions options;
  options.optimizer.kind = OptimizerKind::AdamW;
  options.schedule.kind = LrScheduleKind::Cosine;
  if (task_kind == "image") {
    options.optimizer.weight_decay = 0.05;
    options.optimizer.beta2 = 0.999;
    options.schedule.peak_lr = 4e-3;
    options.epochs = 7;
  } else if (task_kind == "lm") {
    options.optimizer.weight_decay = 0.01;
    options.schedule.peak_lr = 1e-3;
    options.epochs = 2;
    options.clip_norm = 1.0;
  } else if (task_kind == "pairs") {
    options.optimizer.weight_decay = 0.01;
    options.schedule.peak_lr = 3e-4;
    options.epochs = 2;
    options.clip_norm = 1.0;
  } else {
    throw Error("unknown task '" + task_kind + "' (image, lm or pairs)");
  }
  options.schedule.warmup_steps = kAutoWarmup;
  options.optimizer.lr = options.schedule.peak_lr;
  return options;
}

nlohmann::json shared_trainer_settings(const TrainerOptions& options) {
  const OptimizerOptions& o = options.optimizer;
  const LrScheduleOptions& l = options.schedule;
  const QuantNoiseOptions& n = options.noise;
  return {{"optimizer",
           {{"kind", static_cast<int>(o.kind)}, {"lr", o.lr}, {"weight_decay", o.weight_decay}, {"beta1", o.beta1},
            {"beta2", o.beta2}, {"eps", o.eps}, {"momentum", o.momentum}, {"nesterov", o.nesterov}}},
          {"schedule",
           {{"kind", static_cast<int>(l.kind)}, {"peak_lr", l.peak_lr}, {"warmup_steps", l.warmup_steps},
            {"warmup_init_lr", l.warmup_init_lr}, {"total_steps", l.total_steps}, {"min_lr", l.min_lr}}},
          {"epochs", options.epochs},
          {"max_steps", options.max_steps},
          {"clip_norm", options.clip_norm},
          {"eval_every", options.eval_every},
          {"save_every", options.save_every},
          {"stop_after", options.stop_after},
          {"resume", options.resume},
          {"init_from", options.init_from},
          {"noise", noise_to_json(n)},
          {"bucket_bytes", options.bucket_bytes},
          {"noise_per_rank", options.noise_per_rank}};
}

namespace {

// The checkpoint's folder must exist and take files, before any work that would be lost.
void check_writable_folder(const std::string& checkpoint_path) {
  const std::filesystem::path folder = std::filesystem::path(checkpoint_path).parent_path();
  const std::string name = folder.empty() ? "." : folder.string();
  QNOISE_CHECK(std::filesystem::is_directory(name), "cannot write the checkpoint '", checkpoint_path, "': its folder '",
               name, "' does not exist");
  QNOISE_CHECK(access(name.c_str(), W_OK) == 0, "cannot write the checkpoint '", checkpoint_path, "' into '", name,
               "': ", std::strerror(errno));
}

// A stream that drops what is written: the JSON lines of ranks other than 0.
class NullBuffer : public std::streambuf {
 protected:
  int overflow(int c) override { return c; }
};

// Whether to resume: the checkpoint exists (on rank 0, whose answer every rank takes; a rank that
// cannot see the file then says so).
bool checkpoint_to_resume(const TrainerOptions& options) {
  const bool here = options.resume && std::filesystem::exists(options.checkpoint_path);
  if (options.group == nullptr) return here;
  const bool resume = options.group->rank0_says(here);
  QNOISE_CHECK(!resume || here, "rank ", options.group->rank(), " cannot find the checkpoint '",
               options.checkpoint_path, "' that rank 0 resumes from: --resume needs it on a file system every rank sees");
  return resume;
}

}  // namespace

TrainingResult train(TrainingTask& task, const TrainerOptions& options) {
  check_options(options);
  DataParallelGroup* group = options.group;
  const int64_t rank = group != nullptr ? group->rank() : 0;
  const int64_t world = group != nullptr ? group->world_size() : 1;
  const bool writer = rank == 0;
  NullBuffer null_buffer;
  std::ostream null_log(&null_buffer);
  std::ostream& log = !writer ? null_log : options.json_log != nullptr ? *options.json_log : std::cout;
  if (writer) check_writable_folder(options.checkpoint_path);
  if (group != nullptr) {
    group->check_same_configuration({{"task", task.config()}, {"trainer", shared_trainer_settings(options)}},
                                    "settings");
    task.set_data_shard({rank, world});
  }
  task.to(options.device);
  torch::nn::Module& model = task.model();
  const uint64_t seed = task.config().value("seed", uint64_t{1});
  const std::vector<NoiseTarget> targets = quant_noise_targets(task, options.noise);
  auto noisy = std::make_unique<NoisyLayers>(model, targets);
  const std::string noise_name =
      targets.empty() ? "none" : options.noise.pq_exact ? "pq-exact" : targets.front().function.name();
  bool codebooks_learned = false;  // exact PQ noise: relearned every codebook_refresh updates

  const int64_t per_epoch = task.batches_per_epoch();
  QNOISE_CHECK(per_epoch > 0, "the training data gives no batch");
  const int64_t total_steps = options.max_steps > 0 ? options.max_steps : options.epochs * per_epoch;
  const LrScheduleOptions schedule = resolved_schedule(options.schedule, total_steps);

  std::vector<at::Tensor> parameters = model.parameters();
  auto optimizer = make_optimizer(parameters, options.optimizer);

  TrainingResult result;
  TrainerOptions resume_options = options;
  resume_options.resume = checkpoint_to_resume(options);
  const CheckpointState resumed = restore_if_resuming(task, resume_options, *optimizer);
  int64_t step = resumed.step;
  if (step == 0 && !options.init_from.empty()) initialize_from(task, options.init_from);
  std::unique_ptr<GradientAverager> averager;
  if (group != nullptr) {
    detail::broadcast_module(*group, model);  // the same start everywhere, whatever each rank drew
    averager = std::make_unique<GradientAverager>(*group, parameters, options.bucket_bytes);
  }

  ProgressOptions display = options.progress;
  if (!writer) display.mode = ProgressOptions::Mode::Off;
  detail::ProgressDisplay progress(display, total_steps, task.unit_name());
  auto save = [&](int64_t at_step) {
    if (!writer) return;
    nlohmann::json metadata = checkpoint_metadata(task, options.noise, result.metrics);
    metadata["trainer"] = shared_trainer_settings(options);
    save_checkpoint(options.checkpoint_path, model, optimizer.get(),
                    {at_step, at_step / per_epoch, metadata.dump(),
                     options.noise.pq_exact && codebooks_learned ? codebooks_of(*noisy) : std::map<std::string, at::Tensor>{}});
  };
  // The mean training loss since the last evaluation, over every rank: shards weighted by share.
  double loss_sum = 0, loss_weight = 0;
  auto evaluate = [&](int64_t at_step) {
    progress.pause();
    progress.interrupt();
    if (!noisy->layers().empty()) {
      const int64_t batches = task.recalibrate_normalization();
      if (group != nullptr) detail::average_normalization_statistics(*group, model, batches);
    }
    result.metrics = evaluate_splits(task, group);
    if (group != nullptr) {
      std::vector<at::Tensor> sums{at::tensor({loss_sum, loss_weight}, at::kDouble)};
      group->all_reduce_sum(sums);
      loss_sum = sums[0][0].item<double>();
      loss_weight = sums[0][1].item<double>();  // the shares of a step add up to 1
    }
    nlohmann::json line = {{"event", "eval"},
                           {"step", at_step},
                           {"epoch", static_cast<double>(at_step) / per_epoch},
                           {"lr", learning_rate(schedule, std::max<int64_t>(0, at_step - 1))},
                           {"quant_noise", noise_name}};
    line.update(metrics_to_json(result.metrics));
    if (loss_weight > 0) line["train_loss"] = loss_sum / loss_weight;
    const double seconds = progress.training_seconds();
    line["train_seconds"] = seconds;
    line[task.unit_name() + "_per_second"] = seconds > 0 ? progress.units() / seconds : 0.0;
    if (group != nullptr) {
      line["ranks"] = world;
      line["allreduce_exposed_seconds"] = averager->exposed_seconds();
    }
    log << line.dump() << std::endl;
    loss_sum = 0;
    loss_weight = 0;
    save(at_step);
    progress.resume();
  };

  int64_t epoch = step / per_epoch;
  if (step < total_steps) task.start_epoch(epoch);
  while (step < total_steps) {
    const int64_t index = step % per_epoch;
    const double lr = learning_rate(schedule, step);
    set_learning_rate(*optimizer, lr);
    optimizer->zero_grad();
    if (options.noise.pq_exact && (!codebooks_learned || step % options.noise.codebook_refresh == 0)) {
      std::vector<NoiseTarget> exact = exact_pq_targets(model, targets, static_cast<uint64_t>(step),
                                                        options.noise.exact_centroids,
                                                        options.noise.exact_blocks_per_centroid);
      // A resumed run continues with the codebooks it had, learned at the last refresh.
      const bool restored = !codebooks_learned && step == resumed.step && step % options.noise.codebook_refresh != 0 &&
                            restore_codebooks(exact, resumed.extras, options.checkpoint_path);
      if (group != nullptr && !restored) {  // rank 0's codebooks on every rank
        std::vector<at::Tensor> codebooks;
        for (auto& target : exact) codebooks.push_back(target.function.codebook);
        group->broadcast(codebooks, 0);
      }
      noisy = std::make_unique<NoisyLayers>(model, std::move(exact));
      codebooks_learned = true;
    }
    if (world > 1) detail::seed_rank_generator(seed, step, rank);
    BatchLoss batch;
    {
      auto scope = noisy->draw(detail::noise_seed(seed, step, rank, options.noise_per_rank));
      batch = task.train_batch(index);
    }
    // Shards' mean losses weighted by their share of the batch: the ranks' average gradient is
    // then the whole batch's.
    (group != nullptr ? batch.loss * (batch.share * static_cast<double>(world)) : batch.loss).backward();
    if (averager) averager->finish();
    if (options.clip_norm > 0) torch::nn::utils::clip_grad_norm_(parameters, options.clip_norm);
    optimizer->step();
    ++step;
    const double loss = batch.loss.item<double>();
    QNOISE_CHECK(std::isfinite(loss), "the training loss became ", loss, " at step ", step,
                 group != nullptr ? " on rank " + std::to_string(rank) : std::string(),
                 " (try a lower learning rate or --clip-norm)");
    loss_sum += loss * batch.share;
    loss_weight += batch.share;
    progress.update(step, loss, static_cast<int64_t>(std::llround(static_cast<double>(batch.units) / batch.share)), lr);

    const bool epoch_done = step % per_epoch == 0;
    const bool last = step == total_steps;
    const bool eval_now = options.eval_every > 0 ? step % options.eval_every == 0 || last : epoch_done || last;
    if (eval_now) {
      evaluate(step);
    } else if ((options.save_every > 0 && step % options.save_every == 0) ||
               (options.stop_after > 0 && step == options.stop_after)) {
      save(step);
    }
    if (options.stop_after > 0 && step == options.stop_after && !last) {
      result.stopped_early = true;
      break;
    }
    if (epoch_done && !last) task.start_epoch(++epoch);
  }
  progress.interrupt();
  result.steps = step;
  result.train_seconds = progress.training_seconds();
  result.units_per_second = result.train_seconds > 0 ? progress.units() / result.train_seconds : 0;
  if (result.metrics.empty() && !result.stopped_early) evaluate(step);  // resumed at the end: its result again
  return result;
}

}  // namespace qnoise
