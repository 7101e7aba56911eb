#pragma once
// .qnz files of small models for the inference tests: a tiny Transformer LM trained for a few steps
// on a repeated line, and the small CNN, both compressed to int8.
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "qnoise/compression_pipeline.h"
#include "shared_fixture.h"
#include "train/small_tasks.h"

namespace qnoise::testing {

// A few Adam steps, so that the model's outputs are far from uniform (clear argmaxes).
inline void train_a_few_steps(TrainingTask& task, int steps, double lr) {
  torch::optim::Adam optimizer(task.model().parameters(), torch::optim::AdamOptions(lr));
  int step = 0;
  for (int64_t epoch = 0; step < steps; ++epoch) {
    task.start_epoch(epoch);
    for (int64_t i = 0; i < task.batches_per_epoch() && step < steps; ++i, ++step) {
      optimizer.zero_grad();
      task.train_batch(i).loss.backward();
      optimizer.step();
    }
  }
  task.model().eval();
}

// A unique name in the test temp directory (ctest runs tests as parallel processes).
inline std::string unique_temp_path(const std::string& name) {
  return ::testing::TempDir() + "qnoise_" + std::to_string(getpid()) + "_" + name;
}

inline nlohmann::json tiny_lm_config(const std::string& data) {
  return {{"task", "lm"}, {"data", data}, {"batch_size", 4}, {"seq_len", 16},
          {"model", {{"d_model", 16}, {"heads", 2}, {"ffn_dim", 32}, {"layers", 1}}}};
}

// A WikiText directory of 60 copies of a verse in every split.
inline std::string write_tiny_wikitext(const std::string& name) {
  const std::filesystem::path dir = unique_temp_path(name);
  std::filesystem::create_directories(dir);
  for (const char* split : {"train", "valid", "test"}) {
    std::ofstream file(dir / (std::string("wiki.") + split + ".tokens"));
    for (int i = 0; i < 60; ++i) file << "in the beginning god created the heaven and the earth .\n";
  }
  return dir.string();
}

// Trains the tiny LM on `data` for a few steps and writes it as int8 to `qnz`.
inline void write_tiny_lm_qnz(const std::string& data, const std::string& qnz) {
  torch::manual_seed(1);
  auto task = make_training_task(tiny_lm_config(data));
  train_a_few_steps(*task, 40, 1e-2);
  write_qnz(qnz, compress_task_model(*task, parse_compression_scheme("int8")).model);
}

// The same for a file alone, shared by every test of a ctest run (shared_fixture.h): trained on
// data that is deleted after (what a user of the file has). Read it, do not change it.
inline std::string tiny_lm_file_without_data() {
  return shared_fixture("tiny_lm_int8.qnz", [](const std::string& qnz) {
    const auto data = write_tiny_wikitext("tiny_lm_data");
    write_tiny_lm_qnz(data, qnz);
    std::filesystem::remove_all(data);
  });
}


// The small CNN after a few steps, as int8; returns the compressed task (its model is the file's).
inline std::unique_ptr<TrainingTask> write_small_cnn_qnz(const std::string& qnz) {
  auto task = small_cnn_task();
  train_a_few_steps(*task, 8, 1e-2);
  write_qnz(qnz, compress_task_model(*task, parse_compression_scheme("int8")).model);
  return task;
}

// The small CNN after a few steps as int8, shared like the tiny LM.
inline std::string small_cnn_file() {
  return shared_fixture("small_cnn_int8.qnz", [](const std::string& qnz) { write_small_cnn_qnz(qnz); });
}

// A TSV directory (train.tsv, valid.tsv) of `rows` pairs each, a task learnable from tokens:
// label 1 (odd rows) when the hypothesis repeats the premise's first word.
inline std::string write_tiny_pairs(const std::string& name, int rows = 96) {
  const std::filesystem::path dir = unique_temp_path(name);
  std::filesystem::create_directories(dir);
  const char* words[] = {"light", "dark", "water", "fire", "earth", "wind"};
  for (const char* split : {"train", "valid"}) {
    std::ofstream file(dir / (std::string(split) + ".tsv"));
    file << "premise\thypothesis\tlabel\n";
    for (int i = 0; i < rows; ++i) {
      const int a = i % 6, b = (i / 6) % 6, label = i % 2;
      file << words[a] << " is good.\t" << words[label ? a : (a + 1 + b % 5) % 6] << " was made!\t" << label << "\n";
    }
  }
  return dir.string();
}

// The tiny pairs classifier after a few steps, as int8; returns the compressed task.
inline std::unique_ptr<TrainingTask> write_tiny_pairs_qnz(const std::string& data, const std::string& qnz) {
  torch::manual_seed(1);
  auto task = make_training_task({{"task", "pairs"}, {"data", data}, {"test_file", ""}, {"batch_size", 16},
                                  {"model", {{"d_model", 16}, {"heads", 2}, {"ffn_dim", 32}, {"layers", 1}}}});
  train_a_few_steps(*task, 30, 3e-3);
  write_qnz(qnz, compress_task_model(*task, parse_compression_scheme("int8")).model);
  return task;
}

}  // namespace qnoise::testing
