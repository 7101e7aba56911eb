// A model rebuilt from a .qnz file alone and run (runtime_task.h, prediction.h,
// text_generation.h): what `qnoise predict` and `qnoise generate` do with a file, with the packed
// kernels on its compressed layers. The file's task configuration sizes the model; the loader
// bounds it (up to 2^32 parameters), and inputs whose model is larger than the much smaller bounds
// below are skipped, so that each run stays fast.
#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "fuzz_input.h"
#include "qnoise/prediction.h"
#include "qnoise/runtime_task.h"
#include "qnoise/text_generation.h"

namespace {

// Bounds on the numbers (not arrays) of the task's "model" object: widths, depths, multipliers;
// and on the context a language model is given.
constexpr double kMaxModelInteger = 64, kMaxModelFraction = 4.0;
constexpr int64_t kMaxSeqLen = 256;

bool small_enough(const nlohmann::json& task) {
  if (!task.is_object()) return true;  // rejected by the loader
  if (task.contains("seq_len") && task["seq_len"].is_number() && task["seq_len"].get<double>() > kMaxSeqLen) return false;
  if (!task.contains("model") || !task["model"].is_object()) return true;
  for (const auto& [key, value] : task["model"].items()) {
    if (value.is_number_integer() && std::abs(value.get<double>()) > kMaxModelInteger) return false;
    if (value.is_number_float() && std::abs(value.get<double>()) > kMaxModelFraction) return false;
  }
  return true;
}

void run(const qnoise::InferenceModel& model) {
  const std::string kind = model.kind();
  if (kind == "image") {
    qnoise::predict_images(model, at::full({2, 28, 28}, 100, at::kByte));
  } else if (kind == "lm") {
    qnoise::next_token_log_probs(model.language_model(), {1, 2, 1},  // ids every vocabulary has
                                  model.task.at("seq_len").get<int64_t>());
  } else if (kind == "pairs") {
    qnoise::predict_pairs(model, {{"in the beginning", "and the earth", -1}});
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qnoise::fuzz::init_libtorch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnoise::fuzz::InputFile file(".qnz");
  qnoise::CompressedModel compressed;
  try {
    compressed = qnoise::read_qnz(file.write(data, size));
  } catch (const qnoise::Error&) {
    return 0;  // the .qnz target covers the reader
  }
  if (!small_enough(compressed.task)) return -1;
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const qnoise::RuntimeInferenceModel runtime = qnoise::load_runtime_inference_model(compressed);
    run(runtime.model);
  });
  return 0;
}
