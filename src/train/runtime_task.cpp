#include "qnoise/runtime_task.h"

#include "qnoise/compression_pipeline.h"
#include "qnoise/layer_factory.h"

namespace qnoise {

RuntimeInferenceModel load_runtime_inference_model(const CompressedModel& file, const RuntimeOptions& options) {
  RuntimeInferenceModel runtime;
  {
    WeightlessConstruction weightless;  // the kernels or the file's values take the weights' place
    runtime.model = build_inference_model(file);
  }
  runtime.layers = std::make_unique<RuntimeLayers>(
      load_packed_module(*runtime.model.module, file, options, runtime.model.recomputed_buffers));
  return runtime;
}

RuntimeTask load_runtime_task(const CompressedModel& model, const std::string& data, const RuntimeOptions& options) {
  RuntimeTask runtime;
  {
    WeightlessConstruction weightless;
    runtime.task = make_compressed_task(model, data);
  }
  runtime.layers = std::make_unique<RuntimeLayers>(
      load_packed_module(runtime.task->model(), model, options, runtime.task->recomputed_buffers()));
  return runtime;
}

}  // namespace qnoise
