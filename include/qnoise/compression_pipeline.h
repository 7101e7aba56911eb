#pragma once
// The paper's pipeline after training, as `qnoise quantize`, `eval` and the demo run it: rebuild a
// task from a training checkpoint, compress its model with a scheme (int8, int4 or iPQ with
// finetuning), and rebuild a task from a compressed model to evaluate or export it.
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "qnoise/input_range_observer.h"
#include "qnoise/ipq.h"
#include "qnoise/qnz_file.h"
#include "qnoise/training_task.h"

namespace qnoise {

// The task a training checkpoint was made for, with its trained weights. `data` replaces the data
// directory stored in the checkpoint ("" keeps it). Throws qnoise::Error when the file is not a
// qnoise training checkpoint or the data gives another vocabulary or label set than the model's.
std::unique_ptr<TrainingTask> load_trained_task(const std::string& checkpoint_path, const std::string& data = "");

// The task a compressed model (read_qnz) was made for, its artifacts checked against the data's,
// before any weight is loaded (the runtime attaches its kernels here, runtime_model.h).
std::unique_ptr<TrainingTask> make_compressed_task(const CompressedModel& model, const std::string& data = "");
// The same with the model's tensors decoded into the task's model, in eval mode.
std::unique_ptr<TrainingTask> load_compressed_task(const CompressedModel& model, const std::string& data = "");

enum class CompressionScheme { Int8, Int4, Ipq };
std::string to_string(CompressionScheme scheme);  // "int8", "int4", "ipq"

struct CompressionOptions {
  CompressionScheme scheme = CompressionScheme::Ipq;
  // Quantized activations (2..8 bits; 0: float): the inputs of every Linear/Conv2d layer
  // fake-quantized per tensor, ranges calibrated on clean passes over training data, or kept from
  // training with activation noise (activation_quant.h).
  int activation_bits = 0;
  // How calibration picks them; unset: trained ranges kept, min-max for the others
  // (ModuleCompressionOptions::activation_ranges).
  std::optional<InputRangeObserver> activation_ranges;
  // int8 / int4: one range per tensor instead of per output channel.
  bool per_tensor = false;
  IpqOptions ipq;  // iPQ: plan, optimizer, stage checkpoints
  WeightScheme rest = WeightScheme::Float16;  // int8 / int4: tensors other than layer weights
};

// "int8", "int4", "ipq", or "ipq+int8" (iPQ weights and int8 activations, the paper's scheme).
// Throws qnoise::Error on other names.
CompressionOptions parse_compression_scheme(const std::string& name);

// The scheme `name` with the task family's defaults: its iPQ plan, and the optimizer and gradient
// clipping its training uses (default_trainer_options).
CompressionOptions default_compression_options(const TrainingTask& task, const std::string& name);

struct CompressionResult {
  CompressedModel model;
  IpqResult ipq;  // iPQ only: per-layer report, k-means time
};

// Compresses the task's model in place (it then holds exactly what the file will hold, so
// evaluating it gives the file's numbers) and returns the file's contents.
CompressionResult compress_task_model(TrainingTask& task, const CompressionOptions& options);

// Decodes every tensor of a compressed model into the task's model (load_compressed_tensors).
void load_compressed_model(TrainingTask& task, const CompressedModel& model);

}  // namespace qnoise
