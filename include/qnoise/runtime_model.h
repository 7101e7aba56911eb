#pragma once
// Inference from a compressed model with its weights kept compressed: every Linear, 1x1 Conv2d and
// Embedding stored as pq (K <= 256), int8 or int4 runs from its stored form through the packed
// kernels (packed_linear.h, embedding_rows.h), attached to the layer (layer_kernel.h); its float
// weight is never decoded and the module keeps a one-value placeholder of the weight's shape. Other
// convolutions (stem, depthwise) stay compressed and are decoded on each call. The architecture is
// built without float weights (layer_factory.h), so they never exist, not even while loading.
// Everything else (biases, norms, float16 and float32 tensors) is decoded into the model as
// load_compressed_task() does.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "qnoise/inference_model.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/qnz_file.h"
#include "qnoise/training_task.h"

namespace qnoise {

// The kernels attached to one model's layers; destroying it detaches them.
class RuntimeLayers {
 public:
  RuntimeLayers() = default;
  RuntimeLayers(const RuntimeLayers&) = delete;
  RuntimeLayers& operator=(const RuntimeLayers&) = delete;
  ~RuntimeLayers();

  // Attaches kernels to the layers of `module` whose weights `model` stores compressed, and
  // replaces those weights by placeholders. Returns the names of the tensors it took
  // ("<layer>.weight"); the caller decodes the others.
  std::set<std::string> attach(torch::nn::Module& module, const CompressedModel& model);

  const std::vector<std::string>& layers() const { return layers_; }
  // Bytes the kernels hold (packed weights, scales, biases; not per-call workspace).
  int64_t resident_bytes() const;

 private:
  std::vector<std::shared_ptr<torch::nn::Module>> modules_;
  std::vector<std::shared_ptr<const LayerKernel>> kernels_;
  std::vector<std::string> layers_;
};

// Gives the heap's free memory back to the system (what loading used and freed: the file's
// contents, repacking buffers), which tune_process() keeps glibc from doing by itself.
void release_freed_memory();

struct RuntimeTask {
  std::unique_ptr<TrainingTask> task;
  std::unique_ptr<RuntimeLayers> layers;  // declared after the task: detached before it goes
};

// A model from its file alone (inference_model.h) with kernels on every layer that has one.
struct RuntimeInferenceModel {
  InferenceModel model;
  std::unique_ptr<RuntimeLayers> layers;  // declared after the model: detached before it goes
};
RuntimeInferenceModel load_runtime_inference_model(const CompressedModel& file);

// The task of a compressed model (its data from the stored configuration, or `data` when given),
// with kernels on every layer that has one and the rest decoded; in eval mode. Throws
// qnoise::Error as load_compressed_task() does.
RuntimeTask load_runtime_task(const CompressedModel& model, const std::string& data = "");

}  // namespace qnoise
