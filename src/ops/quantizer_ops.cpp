// Scalar and product quantization as operators: fake quantization for training, k-means and the
// compressed forms of weights (torch.classes.qnoise.CompressedTensor), int8 activations'
// calibration, and plans parsed as the C++ library parses them.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "ops/compressed_tensor.h"
#include "ops/op_registry.h"
#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/input_range_observer.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/quantization_plan.h"
#include "qnoise/scalar_quantizer.h"
#include "qnoise/seeded_order.h"

namespace qnoise::ops {

namespace {

using CompressedTensorPtr = c10::intrusive_ptr<CompressedTensor>;

ScalarObserver parse_observer(const std::string& name) {
  if (name == "minmax") return ScalarObserver::MinMax;
  if (name == "mse") return ScalarObserver::MSE;
  throw Error("unknown scalar observer '" + name + "' (expected minmax or mse)");
}

KMeansInit parse_init(const std::string& name) {
  if (name == "sampled") return KMeansInit::Sampled;
  if (name == "kmeans++") return KMeansInit::KMeansPlusPlus;
  throw Error("unknown k-means init '" + name + "' (expected sampled or kmeans++)");
}

at::Tensor fake_quantize_op(const at::Tensor& weight, int64_t bits, bool symmetric, bool per_channel,
                            std::string observer) {
  const ScalarQuantizer quantizer(ScalarQuantizerOptions()
                                      .set_bits(static_cast<int>(bits))
                                      .set_symmetric(symmetric)
                                      .set_per_channel(per_channel)
                                      .set_observer(parse_observer(observer)));
  return quantizer.fake_quantize(weight, quantizer.observe(weight.detach()));
}

CompressedTensorPtr compress_scalar_op(const at::Tensor& weight, int64_t bits, std::string observer) {
  QNOISE_CHECK(bits == 8 || bits == 4, "compressed scalar weights are int8 or int4, not int", bits);
  return c10::make_intrusive<CompressedTensor>(
      compress_scalar(weight.detach().to(at::kFloat).contiguous(), static_cast<int>(bits), parse_observer(observer)));
}

CompressedTensorPtr compress_float_op(const at::Tensor& tensor, std::string scheme) {
  const WeightScheme parsed = parse_weight_scheme(scheme);
  QNOISE_CHECK(parsed == WeightScheme::Float32 || parsed == WeightScheme::Float16, "compress_float stores float32 or ",
               "float16, not ", scheme);
  return c10::make_intrusive<CompressedTensor>(compress_float(tensor.detach().contiguous(), parsed));
}

// k-means on [n_blocks, d] blocks; the codes as int64 (ProductQuantizer's uint8 / int16 widened).
std::tuple<at::Tensor, at::Tensor> kmeans_op(const at::Tensor& blocks, int64_t n_centroids, int64_t iterations,
                                             int64_t seed, std::string init) {
  QNOISE_CHECK(blocks.dim() == 2, "k-means needs [n_blocks, block_size] blocks, got ", blocks.sizes());
  ProductQuantizer quantizer(blocks.size(1), ProductQuantizerOptions()
                                                 .set_n_centroids(n_centroids)
                                                 .set_n_iterations(static_cast<int>(iterations))
                                                 .set_init(parse_init(init))
                                                 .set_seed(static_cast<uint64_t>(seed)));
  const at::Tensor input = blocks.detach().to(at::kFloat).contiguous();
  quantizer.train(input);
  const at::Tensor codes = quantizer.compute_codes(input).to(at::kLong).bitwise_and(0xFFFF);
  return {quantizer.codebook(), codes};
}

// A weight's blocks quantized as compress_module quantizes a PQ layer: K = centroids (the plan's
// centroids_for), k-means seeded by (seed, stream) with the plan's seed and the layer's place.
std::tuple<at::Tensor, at::Tensor> pq_encode_op(const at::Tensor& weight, int64_t block_size, int64_t n_centroids,
                                                int64_t iterations, int64_t seed, int64_t stream) {
  const BlockLayout layout = layout_of_weight(weight, block_size);
  const uint64_t mixed = mix_seed(static_cast<uint64_t>(seed), static_cast<uint64_t>(stream));
  return kmeans_op(layout.to_blocks(weight.detach().to(at::kFloat)), n_centroids, iterations,
                   static_cast<int64_t>(mixed), "sampled");
}

at::Tensor pq_assign_op(const at::Tensor& blocks, const at::Tensor& codebook) {
  ProductQuantizer quantizer(codebook.size(1), ProductQuantizerOptions().set_n_centroids(codebook.size(0)));
  quantizer.set_codebook(codebook.detach().to(at::kFloat).contiguous());
  return quantizer.compute_codes(blocks.detach().to(at::kFloat).contiguous()).to(at::kLong).bitwise_and(0xFFFF);
}

// codebook[codes] in the weight's shape, differentiable in the codebook (each centroid gets the
// sum of its blocks' gradients).
at::Tensor pq_decode_op(const at::Tensor& codebook, const at::Tensor& codes, std::vector<int64_t> shape) {
  QNOISE_CHECK(codebook.dim() == 2, "the codebook must be [K, block_size], got ", codebook.sizes());
  const BlockLayout layout = layout_of_shape(shape, codebook.size(1));
  QNOISE_CHECK(codes.numel() == layout.n_blocks(), "codes: ", codes.numel(), " for the ", layout.n_blocks(),
               " blocks of ", layout.describe());
  return codebook.index_select(0, codes.reshape({-1}).to(at::kLong)).reshape(shape);
}

CompressedTensorPtr compress_pq_op(const at::Tensor& codebook, const at::Tensor& codes, std::vector<int64_t> shape,
                                   std::string layer_kind, int64_t centroid_bits) {
  // BlockLayout checks the shape's rank against the kind.
  const BlockLayout layout(parse_layer_kind_name(layer_kind), shape, codebook.size(1));
  const int64_t k = codebook.size(0);
  QNOISE_CHECK(k >= 1 && k <= 65536, "a PQ codebook has 1..65536 centroids, got ", k);
  const at::Tensor narrow = codes.reshape({-1}).to(ProductQuantizer::index_dtype(k));
  return c10::make_intrusive<CompressedTensor>(
      compress_pq(layout, codebook.detach().to(at::kFloat).contiguous(), narrow, static_cast<int>(centroid_bits)));
}

at::Tensor round_centroids_op(const at::Tensor& codebook, int64_t bits) {
  return round_centroids(codebook.detach().to(at::kFloat), static_cast<int>(bits));
}

at::Tensor quantize_input_op(at::Tensor state, const at::Tensor& input) { return quantize_input(state, input); }

void finish_calibration_op(at::Tensor state, std::string layer) { finish_input_calibration(state, layer); }

std::tuple<double, double> mse_input_range_op(const at::Tensor& histogram, double min, double max, int64_t bits) {
  const auto [low, high] =
      mse_input_range(histogram, static_cast<float>(min), static_cast<float>(max), static_cast<int>(bits));
  return {low, high};
}

void count_input_histogram_op(at::Tensor histogram, const at::Tensor& input, double min, double max) {
  count_input_histogram(histogram, input, static_cast<float>(min), static_cast<float>(max));
}

// K for a PQ layer of n_blocks blocks, as compress_module chooses it (QuantizationPlan::centroids_for).
int64_t centroids_for_op(int64_t n_centroids, int64_t blocks_per_centroid, int64_t n_blocks) {
  QuantizationPlan plan;
  plan.blocks_per_centroid = blocks_per_centroid;
  PqStage stage;
  stage.n_centroids = n_centroids;
  return plan.centroids_for(stage, n_blocks);
}

std::string parse_plan_op(std::string json) {
  return to_json(parse_quantization_plan(parse_json_text(json, "quantization plan"))).dump();
}

}  // namespace

void register_quantizer_ops(torch::Library& library) {
  library.def(
      "fake_quantize(Tensor weight, int bits=8, bool symmetric=False, bool per_channel=True, "
      "str observer='minmax') -> Tensor",
      fake_quantize_op);
  library.def("compress_scalar", compress_scalar_op);
  library.def("compress_float", compress_float_op);
  library.def("kmeans(Tensor blocks, int n_centroids, int iterations=15, int seed=0, str init='sampled') -> (Tensor, Tensor)",
              kmeans_op);
  library.def(
      "pq_encode(Tensor weight, int block_size, int n_centroids, int iterations=15, int seed=1, int stream=0) -> "
      "(Tensor, Tensor)",
      pq_encode_op);
  library.def("pq_assign", pq_assign_op);
  library.def("pq_decode", pq_decode_op);
  library.def("compress_pq", compress_pq_op);
  library.def("round_centroids", round_centroids_op);
  library.def("new_input_quant_state", [] { return new_input_quant_state(); });
  library.def("quantize_input(Tensor(a!) state, Tensor input) -> Tensor", quantize_input_op);
  library.def("finish_input_calibration(Tensor(a!) state, str layer) -> ()", finish_calibration_op);
  library.def("mse_input_range(Tensor histogram, float min, float max, int bits=8) -> (float, float)",
              mse_input_range_op);
  library.def("count_input_histogram(Tensor(a!) histogram, Tensor input, float min, float max) -> ()",
              count_input_histogram_op);
  library.def("parse_plan", parse_plan_op);
  library.def("centroids_for", centroids_for_op);
}

}  // namespace qnoise::ops
