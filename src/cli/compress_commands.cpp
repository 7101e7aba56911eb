// `qnoise quantize`, `prune`, `eval`, `info` and `export`: compress a trained checkpoint into a .qnz file
// measure it, describe it, and give its float weights back to PyTorch users.
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/compression_report.h"
#include "cli/table.h"
#include "cli/torchscript_model.h"
#include "cli/torchscript_quantization.h"
#include "qnoise/checkpoint.h"
#include "qnoise/compression_pipeline.h"
#include "qnoise/error.h"
#include "qnoise/fairseq_quantization_config.h"
#include "qnoise/layer_pruning.h"
#include "qnoise/runtime_task.h"
#include "qnoise/safetensors.h"
#include "qnoise/trainer.h"
#include "qnoise/transformer_lm.h"

namespace qnoise::cli {

namespace {

struct QuantizeCommandOptions {
  std::string model, torchscript, scheme = "ipq", plan_path, data, out, progress = "auto";
  int64_t finetune_steps = -1;  // -1: the plan's
  double finetune_noise = -1;   // < 0: the plan's
  std::string scalar_ranges = "channel";  // int8 / int4: channel or tensor
  int64_t activation_bits = -1;            // -1: the scheme's (8 for ipq+int8, else float)
  std::string activation_ranges;           // empty: trained ranges kept, min-max for the others
  int64_t block_size = 8, n_centroids = 256;  // --torchscript ipq
  TorchscriptTask task;                        // --torchscript ipq finetuning
  bool resume = false;
  DataParallelFlags data_parallel;             // iPQ finetuning on several ranks
};

// A TorchScript model's Linear / Conv2d / Embedding weights into a .qnz (torchscript_quantization.h).
void run_torchscript_quantize(const QuantizeCommandOptions& command) {
  QNOISE_CHECK(command.plan_path.empty() && !command.resume && command.finetune_noise == -1 &&
                   command.scalar_ranges == "channel" && command.activation_bits == -1 &&
                   command.activation_ranges.empty(),
               "--config, --finetune-noise, --scalar-ranges, --activation-bits, --activation-ranges and --resume are for "
               "qnoise checkpoints; a "
               "TorchScript model takes --scheme, --block-size, --centroids and --finetune-steps");
  TorchscriptQuantization options;
  options.scheme = command.scheme;
  options.block_size = command.block_size;
  options.n_centroids = command.n_centroids;
  options.finetune_steps = std::max<int64_t>(0, command.finetune_steps);
  options.task = command.task;
  options.task.data = command.data;
  torch::jit::Module module = load_torchscript_model(command.torchscript);
  nlohmann::json line = {{"event", "quantized"}, {"torchscript", command.torchscript}, {"scheme", command.scheme}};
  nlohmann::json report;
  write_qnz(command.out, quantize_torchscript(module, options, report));
  line.update(report);
  line["out"] = command.out;
  std::cout << line.dump() << "\n";
}

// A plan file: qnoise's JSON, or fairseq's quantization YAML (.yaml / .yml) resolved against the
// model's layers with the family's finetuning settings (`family_plan`), which fairseq's file lacks.
QuantizationPlan read_plan_file(const std::string& path, torch::nn::Module& model, const QuantizationPlan& family_plan) {
  if (!is_fairseq_quantization_config_path(path)) return read_quantization_plan(path);
  const FairseqQuantizationConfig config = read_fairseq_quantization_config(path);
  try {
    return fairseq_quantization_plan(config, model, family_plan);
  } catch (const Error& e) {
    throw Error("'" + path + "': " + e.what());
  }
}

void run_quantize(const QuantizeCommandOptions& command, const LaunchEnvironment& environment) {
  QNOISE_CHECK(std::filesystem::path(command.out).extension() == ".qnz", "--out must name a .qnz file, got '",
               command.out, "'");
  QNOISE_CHECK(command.model.empty() != command.torchscript.empty(),
               "give the model to compress: --model CHECKPOINT (from qnoise train) or --torchscript MODEL.pt");
  if (!command.torchscript.empty()) {
    QNOISE_CHECK(command.data_parallel.nproc_per_node == 1 && !data_parallel_options(command.data_parallel, environment),
                 "--torchscript quantization runs in one process");
    return run_torchscript_quantize(command);
  }
  if (launch_local_ranks(command.data_parallel, environment)) return;
  const std::unique_ptr<DataParallelGroup> group = connect_if_data_parallel(command.data_parallel, environment);
  const bool writer = group == nullptr || group->rank() == 0;
  auto task = load_trained_task(command.model, command.data);
  CompressionOptions options = default_compression_options(*task, command.scheme);
  if (!command.plan_path.empty()) {
    QNOISE_CHECK(options.scheme == CompressionScheme::Ipq, "--config (a quantization plan) applies to --scheme ipq");
    options.ipq.plan = read_plan_file(command.plan_path, task->model(), options.ipq.plan);
  }
  if (command.finetune_steps >= 0) options.ipq.plan.finetune_steps = command.finetune_steps;
  if (command.finetune_noise != -1) {
    QNOISE_CHECK(command.finetune_noise >= 0 && command.finetune_noise < 1, "--finetune-noise must be in [0, 1), got ",
                 command.finetune_noise);
    options.ipq.plan.noise_rate = command.finetune_noise;
  }
  QNOISE_CHECK(command.scalar_ranges == "channel" || options.scheme != CompressionScheme::Ipq,
               "--scalar-ranges applies to --scheme int8 and int4");
  options.per_tensor = command.scalar_ranges == "tensor";
  if (command.activation_bits != -1) {
    QNOISE_CHECK(command.activation_bits == 0 || (command.activation_bits >= 2 && command.activation_bits <= 8),
                 "--activation-bits must be 0 (float) or in 2..8, got ", command.activation_bits);
    QNOISE_CHECK(command.scheme != "ipq+int8" || command.activation_bits == 8,
                 "--scheme ipq+int8 quantizes activations to 8 bits; for other bits use --scheme ipq --activation-bits N");
    options.activation_bits = static_cast<int>(command.activation_bits);
  }
  if (!command.activation_ranges.empty())
    options.activation_ranges = parse_input_range_observer(command.activation_ranges);
  QNOISE_CHECK(!options.activation_ranges || options.activation_bits != 0,
               "--activation-ranges applies to quantized activations (--activation-bits N or --scheme ipq+int8)");
  options.ipq.checkpoint_path = command.out + ".stages.pt";
  options.ipq.resume = command.resume;
  options.ipq.json_log = &std::cout;
  options.ipq.progress.mode = parse_progress_mode(command.progress);
  options.ipq.group = group.get();
  options.ipq.bucket_bytes = static_cast<int64_t>(command.data_parallel.bucket_mb * (1 << 20));

  if (writer)
    std::cerr << "qnoise quantize: " << command.scheme << " of '" << command.model << "' (" << task->kind()
              << " model)\n";
  // Every rank evaluates its shard of each split; the shards' metrics are combined.
  if (group != nullptr) task->set_data_shard({group->rank(), group->world_size()});
  const std::map<std::string, SplitMetrics> before = evaluate_splits(*task, group.get());
  const CompressionResult result = compress_task_model(*task, options);
  const std::map<std::string, SplitMetrics> after = evaluate_splits(*task, group.get());
  if (!writer) return;
  write_qnz(command.out, result.model);
  std::filesystem::remove(options.ipq.checkpoint_path);  // the stages are done: the .qnz holds everything

  const auto file_bytes = std::filesystem::file_size(command.out);
  if (!result.ipq.layers.empty()) std::cout << "\n" << pq_layer_table(result.ipq) << "\n";
  std::cout << size_summary(result.model, file_bytes) << "\n" << metrics_comparison(*task, before, after) << "\n";
  // The same figures as one JSON line, for scripts (bench/experiments read it).
  nlohmann::json line = {{"event", "quantized"},
                         {"model", command.model},
                         {"scheme", command.scheme},
                         {"file", command.out},
                         {"file_bytes", file_bytes},
                         {"float32_bytes", result.model.float_bytes()},
                         {"stored_bytes", result.model.stored_bytes()},
                         {"metric", task->primary_metric()}};
  if (options.per_tensor) line["scalar_ranges"] = "tensor";
  if (options.activation_bits != 0) line["activation_bits"] = options.activation_bits;
  if (options.activation_ranges) line["activation_ranges"] = to_string(*options.activation_ranges);
  line["float"] = metrics_to_json(before);
  line["compressed"] = metrics_to_json(after);
  std::cout << line.dump() << "\n";
}

struct PruneCommandOptions {
  std::string model, data, out;
  int64_t keep_every = 2;
};

void run_prune(const PruneCommandOptions& command) {
  QNOISE_CHECK(std::filesystem::path(command.out).extension() == ".pt", "--out must name a .pt checkpoint, got '",
               command.out, "'");
  nlohmann::json metadata = read_training_checkpoint_metadata(command.model);
  auto trained = load_trained_task(command.model, command.data);
  auto pruned = prune_layers(*trained, command.keep_every);
  const std::map<std::string, SplitMetrics> metrics = evaluate_splits(*pruned);
  // The training checkpoint's metadata (noise settings included) with the pruned configuration.
  const nlohmann::json fresh = checkpoint_metadata(*pruned, QuantNoiseOptions{}, metrics);
  metadata["task"] = fresh.at("task");
  metadata["metrics"] = fresh.at("metrics");
  metadata["pruned"] = {{"from", command.model},
                        {"keep_every", command.keep_every},
                        {"layers_before", trained->config().at("model").at("layers")}};
  save_checkpoint(command.out, pruned->model(), nullptr, {0, 0, metadata.dump(), {}});

  nlohmann::json line = {{"event", "pruned"},
                         {"model", command.model},
                         {"out", command.out},
                         {"keep_every", command.keep_every},
                         {"layers", pruned->config().at("model").at("layers")},
                         {"parameters_before", count_parameters(trained->model())},
                         {"parameters", count_parameters(pruned->model())}};
  line.update(metrics_to_json(metrics));
  std::cout << line.dump() << "\n";
}

struct EvalCommandOptions {
  std::string file, data, weights;
  bool decoded = false;
  bool torchscript = false;
  TorchscriptTask task;
};

// A TorchScript model saved from Python: test accuracy of a Fashion-MNIST classifier, or
// perplexity of a language model on WikiText-format text (torchscript_tasks.h).
void run_torchscript_eval(const EvalCommandOptions& command) {
  QNOISE_CHECK(!command.decoded, "--decoded is for .qnz files; a TorchScript model runs as it was saved");
  torch::jit::Module module = load_torchscript_model(command.file);
  if (!command.weights.empty()) load_qnz_into_torchscript(module, read_qnz(command.weights), command.weights);
  TorchscriptTask task = command.task;
  task.data = command.data;
  nlohmann::json line = {{"event", "eval"},
                         {"file", command.file},
                         {"weights", command.weights.empty() ? "torchscript" : command.weights}};
  line.update(evaluate_torchscript(module, task));
  std::cout << line.dump() << "\n";
}

// --task, --vocab and --seq-len of the TorchScript commands.
void add_torchscript_task_options(CLI::App& app, TorchscriptTask& task) {
  app.add_option("--task", task.kind, "--torchscript: image (Fashion-MNIST classifier, default) or lm (language "
                 "model on --data's wiki.{train,valid,test}.tokens)");
  app.add_option("--vocab", task.vocabulary, "--torchscript --task lm: the model's vocabulary (\"token count\" lines "
                 "in id order); default: built from the training split as qnoise train builds it");
  app.add_option("--seq-len", task.seq_len, "--torchscript --task lm: tokens per window (default 64)");
}

void run_eval(const EvalCommandOptions& command, const RuntimeOptions& runtime_options) {
  QNOISE_CHECK(command.weights.empty() || command.torchscript, "--weights goes with --torchscript");
  if (command.torchscript) return run_torchscript_eval(command);
  const CompressedModel model = read_qnz(command.file);
  nlohmann::json line = {{"event", "eval"}, {"file", command.file}};
  std::map<std::string, SplitMetrics> metrics;
  if (command.decoded) {
    metrics = evaluate_splits(*load_compressed_task(model, command.data));
    line["weights"] = "decoded";
  } else {
    const RuntimeTask runtime = load_runtime_task(model, command.data, runtime_options);
    metrics = evaluate_splits(*runtime.task);
    line["weights"] = "compressed";
    line["kernel_layers"] = runtime.layers->layers().size();
  }
  line.update(metrics_to_json(metrics));
  std::cout << line.dump() << "\n";
}

struct InfoCommandOptions {
  std::string file;
};

void run_info(const InfoCommandOptions& command) {
  const CompressedModel model = read_qnz(command.file);
  std::cout << "'" << command.file << "': " << model.task.value("task", std::string("?")) << " model, plan "
            << model.plan.dump() << "\n\n"
            << tensor_table(model) << "\n"
            << size_summary(model, std::filesystem::file_size(command.file)) << "\n";
}

struct ExportCommandOptions {
  std::string file, out;
};

void run_export(const ExportCommandOptions& command) {
  const CompressedModel model = read_qnz(command.file);
  const auto extension = std::filesystem::path(command.out).extension();
  if (extension == ".safetensors") {
    SafetensorsContents contents;
    contents.metadata = {{"format", "qnoise-float"}, {"task", model.task.dump()}, {"artifacts", model.artifacts.dump()}};
    for (const auto& [name, weight] : model.tensors) contents.tensors.push_back({name, "F32", weight.decode()});
    write_safetensors(command.out, contents);
  } else {
    QNOISE_CHECK(extension == ".pt", "--out must end in .pt (a qnoise checkpoint) or .safetensors, got '",
                 command.out, "'");
    auto task = load_compressed_task(model);
    save_checkpoint(command.out, task->model(), nullptr,
                    {0, 0, checkpoint_metadata(*task, QuantNoiseOptions{}, {}).dump(), {}});
  }
  std::cerr << "wrote the float32 weights of '" << command.file << "' to '" << command.out << "'\n";
}

}  // namespace

std::vector<Command> add_compression_commands(CLI::App& parent, const RuntimeOptions& runtime,
                                              const LaunchEnvironment& environment) {
  auto quantize = std::make_shared<QuantizeCommandOptions>();
  CLI::App* q = parent.add_subcommand(
      "quantize", "Compress a trained checkpoint (int8, int4, or iPQ with finetuning) into a .qnz file");
  q->add_option("--model", quantize->model, "Training checkpoint (from qnoise train; a TorchScript archive: only from trusted sources)");
  q->add_option("--torchscript", quantize->torchscript,
                "Instead of --model: a TorchScript model (torch.jit.save); its torch.nn Linear, Conv2d and Embedding "
                "weights are compressed (--scheme int8, int4 or ipq; ipq finetunes for --finetune-steps on --task's "
                "data), the .qnz holds its tensors (run it: eval/predict --torchscript MODEL --weights FILE)");
  q->add_option("--block-size", quantize->block_size, "--torchscript ipq: block size of Linear/Embedding rows and "
                "1x1 convolutions (k x k kernels are one block; default 8)")->check(CLI::PositiveNumber);
  q->add_option("--centroids", quantize->n_centroids, "--torchscript ipq: centroids per layer, at most (default 256)")
      ->check(CLI::Range(int64_t{2}, int64_t{65536}));
  add_torchscript_task_options(*q, quantize->task);
  q->add_option("--scheme", quantize->scheme, "int8, int4, ipq, or ipq+int8 (iPQ weights, int8 activations); default ipq")
      ->check(CLI::IsMember({"int8", "int4", "ipq", "ipq+int8"}));
  q->add_option("--scalar-ranges", quantize->scalar_ranges,
                "int8 / int4: channel (a range per output channel; default) or tensor (one per weight, as the paper)")
      ->check(CLI::IsMember({"channel", "tensor"}));
  q->add_option("--activation-bits", quantize->activation_bits,
                "Quantize every Linear/Conv2d input per tensor to N bits (2..8), ranges calibrated on training "
                "batches or kept from training with --activation-bits; 0: float (default; ipq+int8: 8)");
  q->add_option("--activation-ranges", quantize->activation_ranges,
                "How calibration picks each input range: minmax (default) or mse (least squared error over a "
                "histogram of the inputs, clipping outliers; calibrates twice). Given, it also replaces the ranges "
                "of a model trained with --activation-bits, which are kept otherwise")
      ->check(CLI::IsMember({"minmax", "mse"}));
  q->add_option("--config", quantize->plan_path, "iPQ plan: JSON, or fairseq's quantization YAML (.yaml/.yml); default: the model family's (docs/compression.md)");
  q->add_option("--data", quantize->data, "Data directory (default: the one the model was trained on)");
  q->add_option("--finetune-steps", quantize->finetune_steps, "iPQ: updates after each stage (default: the plan's)")
      ->check(CLI::NonNegativeNumber);
  q->add_option("--finetune-noise", quantize->finetune_noise,
                "iPQ: Quant-Noise rate on the layers not yet quantized while finetuning (default: the plan's, 0.05; "
                "0: none)");
  q->add_option("--out", quantize->out, "The .qnz file, written atomically")->required();
  q->add_flag("--resume", quantize->resume, "iPQ: continue after the last finished stage (OUT.stages.pt)");
  q->add_option("--progress", quantize->progress, "auto, bar, lines or off");
  add_data_parallel_flags(q, quantize->data_parallel);

  auto prune = std::make_shared<PruneCommandOptions>();
  CLI::App* p = parent.add_subcommand(
      "prune", "Keep every N-th layer of a Transformer trained with LayerDrop; writes a smaller training checkpoint");
  p->add_option("--model", prune->model, "Training checkpoint (lm or pairs model)")->required();
  p->add_option("--keep-every", prune->keep_every, "Keep depths 0, N, 2N, ... (default 2: every other layer)")
      ->check(CLI::PositiveNumber);
  p->add_option("--data", prune->data, "Data directory (default: the one the model was trained on)");
  p->add_option("--out", prune->out, "The pruned checkpoint (.pt), written atomically")->required();

  auto eval = std::make_shared<EvalCommandOptions>();
  CLI::App* e = parent.add_subcommand("eval", "Perplexity or accuracy of a .qnz model on its data splits");
  e->add_option("file", eval->file, "The .qnz file (with --torchscript: a TorchScript model)")->required();
  e->add_option("--data", eval->data, "Data directory (default: the one the model was trained on)");
  e->add_flag("--torchscript", eval->torchscript,
              "The file is a TorchScript model saved from Python (its qnoise packed layers run on qnoise's kernels): "
              "a Fashion-MNIST classifier's test accuracy, or with --task lm a language model's perplexity");
  e->add_option("--weights", eval->weights,
                "--torchscript: a .qnz of the model's tensors (qnoise quantize --torchscript) decoded into it first");
  add_torchscript_task_options(*e, eval->task);
  e->add_flag("--decoded", eval->decoded,
              "Decode every weight to float first (default: run Linear, 1x1 conv and embedding layers from "
              "their compressed weights)");

  auto info = std::make_shared<InfoCommandOptions>();
  CLI::App* i = parent.add_subcommand("info", "Per-tensor scheme, shape, bits per weight and bytes of a .qnz file");
  i->add_option("file", info->file, "The .qnz file")->required();

  auto exporter = std::make_shared<ExportCommandOptions>();
  CLI::App* x = parent.add_subcommand("export", "Write the decompressed float32 weights of a .qnz file");
  x->add_option("file", exporter->file, "The .qnz file")->required();
  x->add_option("--out", exporter->out, "model.safetensors (for PyTorch) or model.pt (a qnoise checkpoint)")
      ->required();
  return {{q, [quantize, &environment] { run_quantize(*quantize, environment); }},
          {p, [prune] { run_prune(*prune); }},
          {e, [eval, &runtime] { run_eval(*eval, runtime); }},
          {i, [info] { run_info(*info); }},
          {x, [exporter] { run_export(*exporter); }}};
}

}  // namespace qnoise::cli
