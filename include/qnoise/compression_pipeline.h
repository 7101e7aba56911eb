#pragma once
// The paper's pipeline after training, as `qnoise quantize`, `eval` and the demo run it: rebuild a
// task from a training checkpoint, compress its model with a scheme (int8, int4 or iPQ with
// finetuning), and rebuild a task from a compressed model to evaluate or export it.
#include <iosfwd>
#include <memory>
#include <string>

#include "qnoise/ipq.h"
#include "qnoise/qnz_file.h"
#include "qnoise/training_task.h"

namespace qnoise {

// The task a training checkpoint was made for, with its trained weights. `data` replaces the data
// directory stored in the checkpoint ("" keeps it). Throws qnoise::Error when the file is not a
// qnoise training checkpoint or the data gives another vocabulary or label set than the model's.
std::unique_ptr<TrainingTask> load_trained_task(const std::string& checkpoint_path, const std::string& data = "");

// The same from a compressed model (read_qnz), its tensors decoded into the task's model.
std::unique_ptr<TrainingTask> load_compressed_task(const CompressedModel& model, const std::string& data = "");

enum class CompressionScheme { Int8, Int4, Ipq };
CompressionScheme parse_compression_scheme(const std::string& name);  // "int8", "int4", "ipq"
std::string to_string(CompressionScheme scheme);

struct CompressionOptions {
  CompressionScheme scheme = CompressionScheme::Ipq;
  IpqOptions ipq;  // iPQ: plan, optimizer, stage checkpoints (ipq.plan empty: the task's default)
  WeightScheme rest = WeightScheme::Float16;  // int8 / int4: tensors other than layer weights
};

struct CompressionResult {
  CompressedModel model;
  IpqResult ipq;  // iPQ only: per-layer report, k-means time
};

// Compresses the task's model in place (it then holds exactly what the file will hold, so
// evaluating it gives the file's numbers) and returns the file's contents.
CompressionResult compress_task_model(TrainingTask& task, const CompressionOptions& options);

}  // namespace qnoise
