// `qnoise train`: train a model on one of the tasks (Fashion-MNIST images, a WikiText-format
// corpus, GLUE-style sentence pairs) with or without Quant-Noise, writing checkpoints.
#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/data_parallel_launch.h"
#include "cli/train_arguments.h"
#include "qnoise/error.h"
#include "qnoise/json_input.h"
#include "qnoise/trainer.h"
#include "qnoise/training_task.h"

namespace qnoise::cli {

namespace {

// A command-line option that sets one key of the task configuration; the value is kept as text
// and converted to the key's type, so options that do not apply to the task are reported by the
// configuration check ("image task has no option 'seq_len'").
struct ConfigFlag {
  enum class Type { Integer, Real, Text, Switch, IntegerList };
  const char* flag;
  const char* section;  // "" (task) or "model"
  const char* key;
  Type type;
  const char* help;
  // Set for fairseq's names of a key another flag sets too: why they must agree.
  const char* shared_key_note = nullptr;
};

using T = ConfigFlag::Type;
const char* const kOneLayerDrop =
    "qnoise's lm model is a decoder and its pairs model an encoder, one Transformer stack each, with one LayerDrop rate";
const std::vector<ConfigFlag>& config_flags() {
  static const std::vector<ConfigFlag> flags = {
      {"--data", "", "data", T::Text, "Data directory (image: Fashion-MNIST IDX files; lm: wiki.*.tokens; pairs: TSV files)"},
      {"--seed", "", "seed", T::Integer, "Seed for initialisation, data order, dropout and noise (default 1)"},
      {"--batch-size", "", "batch_size", T::Integer, "Training batch size (images, sequences or pairs)"},
      {"--eval-batch-size", "", "eval_batch_size", T::Integer, "Evaluation batch size"},
      {"--train-limit", "", "train_limit", T::Integer, "Use only the first N training examples (lm: tokens)"},
      {"--valid-size", "", "valid_size", T::Integer, "image: training images held out for validation (5000)"},
      {"--no-augment", "", "augment", T::Switch, "image: no random crop / flip"},
      {"--seq-len", "", "seq_len", T::Integer, "lm: tokens per training window (128)"},
      {"--min-count", "", "min_count", T::Integer, "lm, pairs: rarer tokens become <unk>"},
      {"--max-vocab", "", "max_vocab", T::Integer, "lm, pairs: vocabulary size limit (0: none)"},
      {"--max-length", "", "max_length", T::Integer, "pairs: tokens per encoded pair (128)"},
      {"--train-file", "", "train_file", T::Text, "pairs: training TSV in --data (train.tsv)"},
      {"--valid-file", "", "valid_file", T::Text, "pairs: validation TSV (valid.tsv; MNLI: dev_matched.tsv)"},
      {"--test-file", "", "test_file", T::Text, "pairs: test TSV (test.tsv; empty: none)"},
      {"--arch", "model", "arch", T::Text, "image: efficientnet or small-cnn"},
      {"--width-multiplier", "model", "width_multiplier", T::Real, "image: EfficientNet channel multiplier"},
      {"--depth-multiplier", "model", "depth_multiplier", T::Real, "image: EfficientNet depth multiplier"},
      {"--stem-stride", "model", "stem_stride", T::Integer, "image: EfficientNet stem stride (2)"},
      {"--channels", "model", "channels", T::Integer, "image: small-cnn channels"},
      {"--dropout", "model", "dropout", T::Real, "Dropout rate"},
      {"--layers", "model", "layers", T::Integer, "lm, pairs: Transformer layers"},
      {"--d-model", "model", "d_model", T::Integer, "lm, pairs: model width (256)"},
      {"--heads", "model", "heads", T::Integer, "lm, pairs: attention heads"},
      {"--ffn-dim", "model", "ffn_dim", T::Integer, "lm, pairs: feed-forward width"},
      {"--attention-dropout", "model", "attention_dropout", T::Real, "lm, pairs: dropout on attention weights"},
      {"--layer-drop", "model", "layer_drop", T::Real, "lm, pairs: LayerDrop rate"},
      {"--encoder-layerdrop", "model", "layer_drop", T::Real, "fairseq's name for --layer-drop (pairs: an encoder)",
       kOneLayerDrop},
      {"--decoder-layerdrop", "model", "layer_drop", T::Real, "fairseq's name for --layer-drop (lm: a decoder)",
       kOneLayerDrop},
      {"--share-every", "model", "share_every", T::Integer, "lm, pairs: groups of N adjacent layers share weights"},
      {"--share-cycle", "model", "share_cycle", T::Switch,
       "lm, pairs: shared layers repeat in a cycle (4 layers, --share-every 2: 0 1 0 1), so pruning every other "
       "layer drops whole shared layers"},
      {"--pooling", "model", "pooling", T::Text, "pairs: cls (RoBERTa) or cls+pair (adds sentence comparison; default)"},
      {"--learned-positions", "model", "learned_positions", T::Switch, "lm: learned instead of sinusoidal positions"},
      {"--adaptive-input", "model", "adaptive_input", T::Switch, "lm: adaptive input embeddings"},
      {"--adaptive-softmax", "model", "adaptive_softmax", T::Switch, "lm: adaptive softmax"},
      {"--cutoffs", "model", "cutoffs", T::IntegerList, "lm: adaptive cut-offs, e.g. 2000,6000"},
      {"--adaptive-factor", "model", "adaptive_factor", T::Real, "lm: dimension divisor per adaptive band (4)"},
  };
  return flags;
}

nlohmann::json parse_flag_value(const ConfigFlag& flag, const std::string& text) {
  try {
    size_t used = 0;
    switch (flag.type) {
      case T::Integer: {
        const long long value = std::stoll(text, &used);
        if (used == text.size()) return value;
        break;
      }
      case T::Real: {
        const double value = std::stod(text, &used);
        if (used == text.size() && std::isfinite(value)) return value;
        break;
      }
      case T::Text:
        return text;
      case T::Switch:
        return true;
      case T::IntegerList: {
        std::vector<int64_t> values;
        std::stringstream items(text);
        for (std::string item; std::getline(items, item, ',');) {
          values.push_back(std::stoll(item, &used));
          if (used != item.size()) throw std::invalid_argument(item);
        }
        return values;
      }
    }
  } catch (const std::exception&) {
  }
  throw Error(std::string(flag.flag) + ": cannot read '" + text + "' as " +
              (flag.type == T::Real ? "a finite number" : flag.type == T::IntegerList ? "a comma-separated list of integers" : "an integer"));
}

struct TrainCommandOptions {
  std::string task;
  std::string config_path;
  std::vector<std::string> flag_values = std::vector<std::string>(config_flags().size());
  std::vector<CLI::Option*> flag_options;
  // Trainer settings: kept as text until the task kind (and its defaults) is known.
  std::map<std::string, std::string> trainer;
  std::map<std::string, CLI::Option*> trainer_options;
  std::string out;
  std::string save_dir;  // fairseq's --save-dir: the checkpoint is save_dir/checkpoint_last.pt
  bool resume = false;
  std::string init_from;
  std::string device = "cpu";
  std::string progress = "auto";
  double log_interval = 30;
  DataParallelFlags data_parallel;
  bool noise_per_rank = false;
};

nlohmann::json task_config(const TrainCommandOptions& options) {
  nlohmann::json config = nlohmann::json::object();
  if (!options.config_path.empty()) {
    std::ifstream file(options.config_path);
    QNOISE_CHECK(file.good(), "cannot open task configuration '", options.config_path, "'");
    config = parse_json_input(file, "'" + options.config_path + "'");
    QNOISE_CHECK(config.is_object(), "'", options.config_path, "' must hold a JSON object");
  }
  if (!options.task.empty()) config["task"] = options.task;
  QNOISE_CHECK(config.contains("task"), "--task is required (image, lm or pairs)");
  std::map<std::string, std::pair<const ConfigFlag*, nlohmann::json>> set_by;  // "model.layer_drop" -> flag, value
  for (size_t i = 0; i < config_flags().size(); ++i) {
    if (options.flag_options[i]->count() == 0) continue;
    const ConfigFlag& flag = config_flags()[i];
    nlohmann::json value = parse_flag_value(flag, options.flag_values[i]);
    if (flag.type == T::Switch && std::string(flag.key) == "augment") value = false;  // --no-augment
    const auto [earlier, first] = set_by.try_emplace(std::string(flag.section) + "." + flag.key, &flag, value);
    if (!first && earlier->second.second != value) {
      const ConfigFlag& other = *earlier->second.first;
      const char* note = flag.shared_key_note ? flag.shared_key_note : other.shared_key_note;
      throw Error(std::string(other.flag) + " " + earlier->second.second.dump() + " and " + flag.flag + " " +
                  value.dump() + " disagree: both set " + flag.key + (note ? std::string(" (") + note + ")" : ""));
    }
    if (*flag.section == '\0')
      config[flag.key] = value;
    else
      config[flag.section][flag.key] = value;
  }
  return complete_task_config(config);
}

double to_number(const std::string& name, const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
  }
  QNOISE_CHECK(used == text.size() && !text.empty() && std::isfinite(value), "--", name, ": cannot read '", text,
               "' as a finite number");
  return value;
}

// Integers up to 2^53 (every one a double holds exactly; far beyond any step count or size).
int64_t to_integer(const std::string& name, const std::string& text) {
  const double value = to_number(name, text);
  constexpr double kLargest = 9007199254740992.0;  // 2^53
  QNOISE_CHECK(std::abs(value) <= kLargest && value == std::floor(value), "--", name, ": '", text,
               "' is not an integer (or is beyond 2^53)");
  return static_cast<int64_t>(value);
}

// --out FILE, or fairseq's --save-dir DIR: DIR/checkpoint_last.pt, the file fairseq rewrites at every
// save (qnoise keeps one checkpoint, written at every evaluation).
std::string checkpoint_path(const TrainCommandOptions& command) {
  QNOISE_CHECK(!command.out.empty() || !command.save_dir.empty(),
               "--out is required: the checkpoint file (or fairseq's --save-dir DIR: DIR/checkpoint_last.pt)");
  QNOISE_CHECK(command.out.empty() || command.save_dir.empty(), "--out '", command.out, "' and --save-dir '",
               command.save_dir, "' both name the checkpoint: give one");
  if (!command.out.empty()) return command.out;
  return (std::filesystem::path(command.save_dir) / "checkpoint_last.pt").string();
}

TrainerOptions trainer_options(const TrainCommandOptions& command, const std::string& kind) {
  TrainerOptions options = default_trainer_options(kind);
  auto given = [&](const char* name) { return command.trainer_options.at(name)->count() > 0; };
  auto text = [&](const char* name) { return command.trainer.at(name); };
  if (given("epochs")) options.epochs = to_integer("epochs", text("epochs"));
  if (given("max-steps")) options.max_steps = to_integer("max-steps", text("max-steps"));
  if (given("optimizer")) options.optimizer.kind = parse_optimizer(text("optimizer"));
  if (given("lr")) options.schedule.peak_lr = options.optimizer.lr = to_number("lr", text("lr"));
  if (given("weight-decay")) options.optimizer.weight_decay = to_number("weight-decay", text("weight-decay"));
  if (given("momentum")) options.optimizer.momentum = to_number("momentum", text("momentum"));
  if (given("lr-schedule")) options.schedule.kind = parse_lr_schedule(text("lr-schedule"));
  if (given("warmup-steps")) options.schedule.warmup_steps = to_integer("warmup-steps", text("warmup-steps"));
  if (given("warmup-init-lr")) options.schedule.warmup_init_lr = to_number("warmup-init-lr", text("warmup-init-lr"));
  if (given("min-lr")) options.schedule.min_lr = to_number("min-lr", text("min-lr"));
  if (given("clip-norm")) options.clip_norm = to_number("clip-norm", text("clip-norm"));
  if (given("eval-every")) options.eval_every = to_integer("eval-every", text("eval-every"));
  if (given("save-every")) options.save_every = to_integer("save-every", text("save-every"));
  if (given("stop-after")) options.stop_after = to_integer("stop-after", text("stop-after"));
  if (given("quant-noise-pq")) options.noise.pq_rate = to_number("quant-noise-pq", text("quant-noise-pq"));
  if (given("pq-noise")) {
    const std::string kind = text("pq-noise");
    QNOISE_CHECK(kind == "proxy" || kind == "exact", "--pq-noise must be proxy or exact, got '", kind, "'");
    options.noise.pq_exact = kind == "exact";
  }
  if (given("codebook-refresh"))
    options.noise.codebook_refresh = to_integer("codebook-refresh", text("codebook-refresh"));
  if (given("pq-noise-centroids"))
    options.noise.exact_centroids = to_integer("pq-noise-centroids", text("pq-noise-centroids"));
  if (given("pq-noise-blocks-per-centroid"))
    options.noise.exact_blocks_per_centroid =
        to_integer("pq-noise-blocks-per-centroid", text("pq-noise-blocks-per-centroid"));
  if (given("quant-noise-pq-block-size"))
    options.noise.pq_block_size = to_integer("quant-noise-pq-block-size", text("quant-noise-pq-block-size"));
  if (given("quant-noise-scalar")) options.noise.scalar_rate = to_number("quant-noise-scalar", text("quant-noise-scalar"));
  if (given("bits")) {
    const int64_t bits = to_integer("bits", text("bits"));
    QNOISE_CHECK(bits >= 2 && bits <= 8, "--bits must be in 2..8, got ", bits);
    options.noise.bits = static_cast<int>(bits);
  }
  if (given("scalar-ranges")) {
    const std::string ranges = text("scalar-ranges");
    QNOISE_CHECK(ranges == "channel" || ranges == "tensor", "--scalar-ranges must be channel or tensor, got '", ranges,
                 "'");
    options.noise.per_tensor = ranges == "tensor";
  }
  if (given("activation-bits")) {
    const int64_t bits = to_integer("activation-bits", text("activation-bits"));
    QNOISE_CHECK(bits >= 2 && bits <= 8, "--activation-bits must be in 2..8, got ", bits);  // before narrowing
    options.noise.activation_bits = static_cast<int>(bits);
  }
  if (given("quant-noise-layers")) options.noise.layers = text("quant-noise-layers");
  options.checkpoint_path = checkpoint_path(command);
  options.resume = command.resume;
  options.init_from = command.init_from;
  QNOISE_CHECK(command.device == "cpu" || command.device == "cuda", "--device must be cpu or cuda, got '",
               command.device, "'");
  options.device = command.device == "cuda" ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
  options.progress.mode = parse_progress_mode(command.progress);
  QNOISE_CHECK(command.log_interval > 0, "--log-interval must be positive");
  options.progress.line_interval_s = command.log_interval;
  options.bucket_bytes = static_cast<int64_t>(command.data_parallel.bucket_mb * (1 << 20));
  options.noise_per_rank = command.noise_per_rank;
  return options;
}

TrainArguments train_arguments(const TrainCommandOptions& command) {
  TrainArguments arguments;
  arguments.config = task_config(command);
  arguments.trainer = trainer_options(command, arguments.config.at("task").get<std::string>());
  return arguments;
}

void run_train(const TrainCommandOptions& command, const LaunchEnvironment& environment) {
  auto [config, options] = train_arguments(command);  // bad options fail before any rank starts
  if (launch_local_ranks(command.data_parallel, environment)) return;
  const std::unique_ptr<DataParallelGroup> group = connect_if_data_parallel(command.data_parallel, environment);
  options.group = group.get();
  const bool writer = group == nullptr || group->rank() == 0;
  if (!command.save_dir.empty() && writer) std::filesystem::create_directories(command.save_dir);  // as fairseq does
  torch::manual_seed(config.at("seed").get<uint64_t>());  // the model's initialisation
  auto task = make_training_task(config);
  if (writer) std::cerr << "qnoise train: " << config.dump() << "\n";
  const TrainingResult result = train(*task, options);
  if (!writer) return;
  std::cerr << (result.stopped_early ? "stopped" : "finished") << " at step " << result.steps << "; checkpoint '"
            << options.checkpoint_path << "'";
  for (const auto& [split, metrics] : result.metrics) {
    const auto found = metrics.find(task->primary_metric());
    if (found != metrics.end()) std::cerr << "; " << split << " " << task->primary_metric() << " " << found->second;
  }
  std::cerr << "\n";
}

// Registers every option of `qnoise train` on `app`, reading into `options`.
void add_train_options(CLI::App* app, TrainCommandOptions& options) {
  app->add_option("--task", options.task, "image (Fashion-MNIST), lm (WikiText format) or pairs (GLUE TSV)")
      ->check(CLI::IsMember({"image", "lm", "pairs"}));
  app->add_option("--config", options.config_path, "Task configuration (JSON); options below override it");
  app->add_option("--out", options.out, "Checkpoint file, written atomically at every evaluation");
  app->add_option("--save-dir", options.save_dir, "fairseq's way to name it: DIR/checkpoint_last.pt (DIR is created)");
  app->add_flag("--resume", options.resume, "Continue from the checkpoint (--out or --save-dir) when it exists (same settings: exact)");
  app->add_option("--init-from", options.init_from,  // a checkpoint: see the trust note of `qnoise --help`
                  "Start from this checkpoint's weights (finetuning, e.g. with Quant-Noise or QAT); fresh optimizer");
  app->add_option("--device", options.device, "cpu or cuda");
  app->add_option("--progress", options.progress, "auto (bar on a terminal, else lines), bar, lines or off");
  app->add_option("--log-interval", options.log_interval, "Seconds between progress lines (30)");
  add_data_parallel_flags(app, options.data_parallel);
  app->add_flag("--noise-per-rank", options.noise_per_rank,
                "Each rank draws its own Quant-Noise masks (as DDP in fairseq) instead of the same ones")
      ->group("Data parallel (docs/distributed.md)");
  for (size_t i = 0; i < config_flags().size(); ++i) {
    const ConfigFlag& flag = config_flags()[i];
    options.flag_options.push_back(flag.type == T::Switch
                                        ? app->add_flag(flag.flag, flag.help)->group("Task and model")
                                        : app->add_option(flag.flag, options.flag_values[i], flag.help)
                                              ->group("Task and model"));
  }
  // Name, fairseq's name where it differs (or ""), help.
  const std::vector<std::tuple<const char*, const char*, const char*>> trainer_flags = {
      {"epochs", "max-epoch", "Passes over the training data"},
      {"max-steps", "max-update", "Stop after N updates in all (overrides --epochs)"},
      {"optimizer", "", "adamw, adam or sgd"},
      {"lr", "", "Peak learning rate"},
      {"weight-decay", "", "Weight decay"},
      {"momentum", "", "SGD momentum"},
      {"lr-schedule", "lr-scheduler", "cosine, inverse-sqrt or constant (fairseq's inverse_sqrt, fixed)"},
      {"warmup-steps", "warmup-updates", "Linear warm-up updates (default: 10% of the run)"},
      {"warmup-init-lr", "", "Learning rate at the start of the warm-up"},
      {"min-lr", "", "cosine: final learning rate"},
      {"clip-norm", "", "Clip the gradient norm (0: off)"},
      {"eval-every", "", "Evaluate and checkpoint every N updates (0: every epoch)"},
      {"save-every", "", "Also checkpoint every N updates"},
      {"stop-after", "", "Stop after update N with a checkpoint, as if interrupted (resume with --resume)"},
      {"quant-noise-pq", "", "Quant-Noise rate for PQ (blocks dropped; 0: off)"},
      {"pq-noise", "", "proxy (chosen blocks zeroed; default) or exact (replaced by their nearest k-means centroid; allows rate 1: iPQ QAT)"},
      {"codebook-refresh", "", "exact PQ noise: updates between k-means runs on the current weights (100)"},
      {"pq-noise-centroids", "", "exact PQ noise: at most K centroids per layer, as the iPQ plan's n_centroids (256)"},
      {"pq-noise-blocks-per-centroid", "", "exact PQ noise: one centroid per N blocks at most, as the iPQ plan's blocks_per_centroid (4)"},
      {"quant-noise-pq-block-size", "", "PQ noise block size (default: 8; 4 input channels for 1x1 convolutions; 3x3 convolutions keep whole kernels)"},
      {"quant-noise-scalar", "", "Quant-Noise rate for int<bits> fake quantization (1: QAT)"},
      {"bits", "", "Bits of the scalar noise (8 or 4; 2..8)"},
      {"scalar-ranges", "", "Scalar noise ranges: channel (one per output channel; default) or tensor (one per weight, as the paper)"},
      {"activation-bits", "", "Scalar noise on the noised layers' inputs too, at these bits (2..8; per-tensor moving-average ranges)"},
      {"quant-noise-layers", "", "Glob over layer names to noise (default: every Linear/Conv2d/Embedding)"},
  };
  for (const auto& [name, fairseq_name, help] : trainer_flags) {
    const std::string names = std::string("--") + name + (*fairseq_name ? std::string(",--") + fairseq_name : "");
    options.trainer[name];
    options.trainer_options[name] = app->add_option(names, options.trainer[name], help)->group("Training");
  }
}

}  // namespace

TrainArguments parse_train_arguments(std::vector<std::string> arguments) {
  CLI::App app("qnoise train");
  TrainCommandOptions options;
  add_train_options(&app, options);
  std::reverse(arguments.begin(), arguments.end());  // CLI11 reads the vector from its back
  try {
    app.parse(arguments);
  } catch (const CLI::ParseError& e) {
    throw Error(std::string("qnoise train: ") + e.what());
  }
  return train_arguments(options);
}

Command add_train_command(CLI::App& parent, const LaunchEnvironment& environment) {
  auto options = std::make_shared<TrainCommandOptions>();
  CLI::App* app = parent.add_subcommand(
      "train", "Train a model with Quant-Noise (or QAT, or none); prints one JSON line per evaluation");
  add_train_options(app, *options);
  return {app, [options, &environment] { run_train(*options, environment); }};
}

}  // namespace qnoise::cli
