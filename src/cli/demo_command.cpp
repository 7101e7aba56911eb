// `qnoise demo`: the whole story on built-in data. Trains the EfficientNet-style CNN on
// Fashion-MNIST with Quant-Noise for about two minutes on 2 cores, compresses it with int8 and with
// iPQ (.qnz files), and prints float vs compressed: size, ratio, accuracy.
// `qnoise demo layer` compares the compression schemes on one layer-sized weight.
#include <ATen/ATen.h>
#include <torch/utils.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/compression_report.h"
#include "cli/table.h"
#include "qnoise/compression_pipeline.h"
#include "qnoise/trainer.h"
#include "qnoise/training_task.h"
#include "qnoise/transformer_lm.h"  // count_parameters

namespace qnoise::cli {

namespace {

struct TrainDemoOptions {
  int64_t epochs = 2;
  double noise_rate = 0.1;
  bool quick = false;  // a tiny model on 2048 images, for smoke tests
  int64_t finetune_steps = 100;  // iPQ: updates after each stage
  std::string out = (std::filesystem::temp_directory_path() / "qnoise-demo.pt").string();
};

std::string config_value_text(const nlohmann::json& config, const char* key) { return config.at(key).dump(); }

// Compresses the trained checkpoint with int8 and with iPQ and prints size and accuracy of each.
void compress_demo_model(const TrainDemoOptions& demo, double float_accuracy) {
  std::cout << "\nCompressing it: int8 per channel, then iPQ (3 stages, " << demo.finetune_steps
            << " finetuning updates after each)..." << std::endl;
  Table table({"model", "file", "size", "vs float32", "test acc.", "change"});
  bool first = true;
  for (const auto scheme : {CompressionScheme::Int8, CompressionScheme::Ipq}) {
    auto task = load_trained_task(demo.out);
    CompressionOptions options = default_compression_options(*task, to_string(scheme));
    options.ipq.plan.finetune_steps = demo.finetune_steps;
    options.ipq.progress.mode = ProgressOptions::Mode::Off;
    const CompressionResult result = compress_task_model(*task, options);
    const std::string path = demo.out.substr(0, demo.out.rfind('.')) + "-" + to_string(scheme) + ".qnz";
    write_qnz(path, result.model);
    const double accuracy = task->evaluate("test").at("accuracy");
    const double bytes = static_cast<double>(std::filesystem::file_size(path));
    const double float_bytes = static_cast<double>(result.model.float_bytes());
    if (first)
      table.add_row({"float32", "", megabytes(float_bytes), "1.00x", format("%.2f%%", 100 * float_accuracy), ""});
    table.add_row({to_string(scheme), path, megabytes(bytes), format("%.2fx", float_bytes / bytes),
                   format("%.2f%%", 100 * accuracy), format("%+.2f points", 100 * (accuracy - float_accuracy))});
    first = false;
  }
  std::cout << "\n" << table.render()
            << "Sizes are the files on disk (tensors, configuration and header); `qnoise info FILE` lists every "
               "tensor.\n";
}

void run_train_demo(const TrainDemoOptions& demo) {
  nlohmann::json config = {{"task", "image"}};
  if (demo.quick) config.update({{"train_limit", 2048}, {"valid_size", 1000}, {"model", {{"arch", "small-cnn"}}}});
  torch::manual_seed(1);
  auto task = make_training_task(config);
  TrainerOptions options = default_trainer_options("image");
  options.epochs = demo.epochs;
  options.noise.pq_rate = demo.noise_rate;
  options.checkpoint_path = demo.out;
  std::ostringstream log;  // the JSON lines; the demo prints a table instead
  options.json_log = &log;
  const int64_t parameters = count_parameters(task->model());
  std::cout << "Training the " << (demo.quick ? "small CNN" : "EfficientNet-style CNN") << " ("
            << parameters << " parameters) on Fashion-MNIST with Quant-Noise (PQ proxy, p = "
            << demo.noise_rate << ", blocks of 4 input channels) for " << demo.epochs << " epochs, "
            << at::get_num_threads() << " threads..." << std::endl;  // before the progress on stderr
  const TrainingResult result = train(*task, options);

  Table table({"model", "parameters", "parameters in float32", "Quant-Noise", "updates", "train time", "valid acc.", "test acc."});
  table.add_row({demo.quick ? "small CNN" : "EfficientNet", std::to_string(parameters),
                 format("%.2f MB", parameters * 4 / 1e6), format("pq p=%.2f", demo.noise_rate),
                 std::to_string(result.steps), format("%.0f s", result.train_seconds),
                 format("%.2f%%", 100 * result.metrics.at("valid").at("accuracy")),
                 format("%.2f%%", 100 * result.metrics.at("test").at("accuracy"))});
  std::cout << "\n" << table.render() << "\nValidation: " << config_value_text(task->config(), "valid_size")
            << " training images held out; test: the 10,000 test images.\n"
            << "Checkpoint: " << demo.out << "\n";
  compress_demo_model(demo, result.metrics.at("test").at("accuracy"));
  std::cout << "\nLonger training (9 epochs: 90.2% test accuracy with Quant-Noise, docs/training.md):\n"
            << "  qnoise train --task image --quant-noise-pq 0.1 --epochs 9 --out model.pt\n"
            << "  qnoise quantize --model model.pt --scheme ipq --out model.qnz && qnoise info model.qnz\n";
}

}  // namespace

Command add_demo_command(CLI::App& parent) {
  auto options = std::make_shared<TrainDemoOptions>();
  CLI::App* app = parent.add_subcommand(
      "demo", "Train a small CNN on Fashion-MNIST with Quant-Noise (~2 min), compress it (int8, iPQ), compare");
  app->add_option("--epochs", options->epochs, "Epochs (2)")->check(CLI::PositiveNumber);
  app->add_option("--quant-noise-pq", options->noise_rate, "Quant-Noise rate (0.1)")->check(CLI::Range(0.0, 0.99));
  app->add_option("--out", options->out, "Checkpoint file");
  app->add_option("--finetune-steps", options->finetune_steps, "iPQ updates after each stage (100)")
      ->check(CLI::NonNegativeNumber);
  app->add_flag("--quick", options->quick, "A tiny CNN on 2048 images (seconds)");
  app->require_subcommand(0, 1);
  const Command layer = add_demo_layer_command(*app);
  return {app, [options, layer] {
            if (layer.app->parsed())
              layer.run();
            else
              run_train_demo(*options);
          }};
}

}  // namespace qnoise::cli
