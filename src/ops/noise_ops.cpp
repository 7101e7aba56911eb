// Quant-Noise as operators: qnoise::quant_noise (training forward passes: a fresh mask from torch's
// generator, straight-through gradient) and the seeded forms the tests compare with the C++ library.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/op_registry.h"
#include "qnoise/error.h"
#include "qnoise/quant_noise.h"

namespace qnoise::ops {

namespace {

NoiseFunction noise_function(const std::string& noise, const c10::optional<at::Tensor>& codebook) {
  if (noise == "pq-exact") {
    QNOISE_CHECK(codebook.has_value(), "pq-exact noise needs a codebook [K, block_size]");
    return NoiseFunction::pq_exact(*codebook);
  }
  QNOISE_CHECK(!codebook.has_value(), "a codebook is only used by pq-exact noise, not '", noise, "'");
  return NoiseFunction::parse(noise);
}

// `workspace`, a tensor of the weight's shape the caller keeps between steps, receives the noisy
// weight whenever nothing else holds it any more (quant_noise.h): no fresh pages every step.
at::Tensor noise_op(const at::Tensor& weight, double rate, int64_t block_size, std::string noise,
                    c10::optional<at::Tensor> codebook, bool training, c10::optional<at::Tensor> workspace) {
  at::Tensor buffer = workspace ? *workspace : at::Tensor();
  return quant_noise(weight, layout_of_weight(weight, block_size), rate, noise_function(noise, codebook), training,
                     workspace ? &buffer : nullptr);
}

at::Tensor seeded_noise_op(const at::Tensor& weight, double rate, int64_t block_size, std::string noise,
                           int64_t seed, c10::optional<at::Tensor> codebook) {
  return quant_noise_with_seed(weight, layout_of_weight(weight, block_size), rate, noise_function(noise, codebook),
                               static_cast<uint64_t>(seed));
}

at::Tensor mask_op(std::vector<int64_t> shape, int64_t block_size, double rate, int64_t seed) {
  return quant_noise_mask(layout_of_shape(shape, block_size), rate, static_cast<uint64_t>(seed));
}

}  // namespace

void register_noise_ops(torch::Library& library) {
  library.def(
      "quant_noise(Tensor weight, float rate, int block_size, str noise='pq', Tensor? codebook=None, "
      "bool training=True, Tensor? workspace=None) -> Tensor",
      noise_op);
  library.def(
      "quant_noise_with_seed(Tensor weight, float rate, int block_size, str noise, int seed, "
      "Tensor? codebook=None) -> Tensor",
      seeded_noise_op);
  library.def("quant_noise_mask(int[] shape, int block_size, float rate, int seed) -> Tensor", mask_op);
}

}  // namespace qnoise::ops
