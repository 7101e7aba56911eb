// torch.ops.qnoise and torch.classes.qnoise: load with torch.ops.load_library("libqnoise_ops.so").
#include <torch/library.h>

#include "ops/op_registry.h"

TORCH_LIBRARY(qnoise, library) {
  qnoise::ops::register_compressed_tensor(library);
  qnoise::ops::register_packed_layer(library);
  qnoise::ops::register_noise_ops(library);
  qnoise::ops::register_quantizer_ops(library);
  qnoise::ops::register_file_ops(library);
}
