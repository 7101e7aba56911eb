#pragma once
// Inference from a compressed model with its weights kept compressed: every Linear, 1x1 Conv2d and
// Embedding stored as pq (K <= 256), int8 or int4 runs from its stored form through the packed
// kernels (packed_linear.h, embedding_rows.h), attached to the layer (layer_kernel.h); its float
// weight is never decoded and the module keeps a one-value placeholder of the weight's shape. Other
// convolutions (stem, depthwise) stay compressed and are decoded on each call. The architecture is
// built without float weights (layer_factory.h), so they never exist, not even while loading.
// Everything else (biases, norms, float16 and float32 tensors) is decoded into the model.
//
// Works on any module whose layers are torch::nn::Linear, Conv2d and Embedding; the kernels run
// where the module's forward reaches its layers through run_layer() (layer_kernel.h), as the
// built-in models do, and a plain forward still runs the layers from their (placeholder) weights,
// so a module of your own must call run_layer() for its compressed layers. The built-in families'
// loaders are in runtime_task.h.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "qnoise/layer_kernel.h"
#include "qnoise/qnz_file.h"
#include "qnoise/runtime_options.h"

namespace qnoise {

// The kernels attached to one model's layers (each layer owns its kernel, layer_kernel.h).
class RuntimeLayers {
 public:
  // Attaches kernels built with `options` to the layers of `module` whose weights `model` stores
  // compressed, and replaces those weights by placeholders. Returns the names of the tensors it
  // took ("<layer>.weight"); the caller decodes the others. Throws qnoise::Error when a stored
  // shape differs from the layer's, or the CPU lacks options.kernel_path.
  std::set<std::string> attach(torch::nn::Module& module, const CompressedModel& model,
                               const RuntimeOptions& options = {});

  const std::vector<std::string>& layers() const { return layers_; }
  // Bytes the kernels hold (packed weights, scales, biases; not per-call workspace).
  int64_t resident_bytes() const;

 private:
  std::vector<std::shared_ptr<const LayerKernel>> kernels_;
  std::vector<std::string> layers_;
};

// Gives the heap's free memory back to the system (what loading used and freed: the file's
// contents, repacking buffers), which a tuned process (malloc thresholds raised) does not do by
// itself.
void release_freed_memory();

// A compressed model into an instance of its architecture, for inference: kernels on every layer
// that has one (RuntimeLayers::attach), every other tensor decoded (load_compressed_tensors,
// model_loading.h), eval mode. `module` is best built without float weights (WeightlessConstruction,
// layer_factory.h) so they never exist. Throws qnoise::Error as both do.
RuntimeLayers load_packed_module(torch::nn::Module& module, const CompressedModel& file,
                                 const RuntimeOptions& options = {},
                                 const std::vector<std::string>& recomputed_buffers = {});

}  // namespace qnoise
