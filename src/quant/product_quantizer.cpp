#include "qnoise/product_quantizer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/error.h"
#include "quant/kmeans.h"
#include "quant/nearest_centroid.h"

namespace qnoise {

namespace {

// Codes are stored in at most 16 bits.
constexpr int64_t kMaxCentroids = 65536;

void check_centroid_range(int64_t n_centroids) {
  QNOISE_CHECK(n_centroids >= 1 && n_centroids <= kMaxCentroids,
               "product quantization needs 1 <= K <= ", kMaxCentroids,
               " centroids, got K = ", n_centroids);
}

// `matrix` as a contiguous float32 CPU [rows, width] tensor, after checking it is one (any
// floating dtype is converted) and holds only finite values. `what` names it in errors.
at::Tensor checked_float_matrix(const at::Tensor& matrix, int64_t width, const char* what) {
  QNOISE_CHECK(matrix.defined(), what, " is an undefined tensor");
  QNOISE_CHECK(matrix.dim() == 2, what, " must be a 2-D [rows, ", width, "] matrix, got shape ",
               shape_to_string(matrix.sizes().vec()));
  QNOISE_CHECK(at::isFloatingType(matrix.scalar_type()), what,
               " must be floating point, got dtype ", matrix.scalar_type());
  QNOISE_CHECK(matrix.size(1) == width, what, " have width ", matrix.size(1), " but block_size is ",
               width);
  QNOISE_CHECK(matrix.size(0) > 0, what, " is empty: shape ",
               shape_to_string(matrix.sizes().vec()));
  at::Tensor converted = matrix.to(at::kCPU, at::kFloat).contiguous();
  QNOISE_CHECK(at::isfinite(converted).all().item<bool>(), what, " contain NaN or Inf");
  return converted;
}

at::Tensor checked_blocks(const at::Tensor& blocks, int64_t block_size) {
  return checked_float_matrix(blocks, block_size, "blocks");
}

KMeansStats store_result(KMeansResult result, at::Tensor& codebook) {
  codebook = std::move(result.centroids);
  return std::move(result.stats);
}

}  // namespace

ProductQuantizer::ProductQuantizer(int64_t block_size, ProductQuantizerOptions options)
    : block_size_(block_size), options_(options) {
  QNOISE_CHECK(block_size >= 1, "block_size must be >= 1, got ", block_size);
  check_centroid_range(options_.n_centroids);
  QNOISE_CHECK(options_.n_iterations >= 0, "n_iterations must be >= 0, got ",
               options_.n_iterations);
  QNOISE_CHECK(options_.chunk_blocks >= 1, "chunk_blocks must be >= 1, got ",
               options_.chunk_blocks);
}

at::ScalarType ProductQuantizer::index_dtype(int64_t n_centroids) {
  check_centroid_range(n_centroids);
  return n_centroids <= 256 ? at::kByte : at::kShort;
}

KMeansStats ProductQuantizer::train(const at::Tensor& blocks) {
  return train(blocks, at::Tensor());
}

KMeansStats ProductQuantizer::train(const at::Tensor& blocks, const at::Tensor& initial_codebook) {
  const at::Tensor data = checked_blocks(blocks, block_size_);
  const int64_t n_centroids = options_.n_centroids;
  check_centroid_range(n_centroids);
  QNOISE_CHECK(n_centroids <= data.size(0), "K = ", n_centroids,
               " centroids need at least as many blocks, but n_blocks = ", data.size(0));
  at::Tensor initial;
  if (initial_codebook.defined()) {
    initial = checked_float_matrix(initial_codebook, block_size_, "initial codebook rows");
    QNOISE_CHECK(initial.size(0) == n_centroids, "initial codebook has ", initial.size(0),
                 " rows but K = ", n_centroids);
  }
  return store_result(kmeans(data, options_, initial), codebook_);
}

at::Tensor ProductQuantizer::compute_codes(const at::Tensor& blocks) const {
  QNOISE_CHECK(codebook_.defined(),
               "ProductQuantizer has no codebook: call train() or set_codebook() first");
  const at::Tensor data = checked_blocks(blocks, block_size_);
  const int64_t n = data.size(0);
  const int64_t n_centroids = codebook_.size(0);
  const kernels::CentroidPanelStorage storage(codebook_.data_ptr<float>(), n_centroids,
                                              block_size_);
  const kernels::CentroidPanel panel = storage.panel();

  at::Tensor codes = at::empty({n}, index_dtype(n_centroids));
  const int64_t chunk = std::min(options_.chunk_blocks, n);  // bounds the scratch buffers
  std::vector<int32_t> index(static_cast<size_t>(chunk));
  std::vector<float> distance(static_cast<size_t>(chunk));
  const float* x = data.data_ptr<float>();
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t count = std::min(chunk, n - begin);
    kernels::nearest_centroid(x + begin * block_size_, count, panel, index.data(), distance.data());
    if (codes.scalar_type() == at::kByte) {
      uint8_t* out = codes.data_ptr<uint8_t>() + begin;
      for (int64_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(index[i]);
    } else {  // the index's 16 bits, so indices above 32767 read back as negative int16
      int16_t* out = codes.data_ptr<int16_t>() + begin;
      for (int64_t i = 0; i < count; ++i)
        out[i] = static_cast<int16_t>(static_cast<uint16_t>(index[i]));
    }
  }
  return codes.to(blocks.device());
}

at::Tensor ProductQuantizer::decode(const at::Tensor& codes) const {
  QNOISE_CHECK(codebook_.defined(),
               "ProductQuantizer has no codebook: call train() or set_codebook() first");
  QNOISE_CHECK(codes.defined(), "codes is an undefined tensor");
  const at::ScalarType dtype = codes.scalar_type();
  QNOISE_CHECK(at::isIntegralType(dtype, /*includeBool=*/false),
               "codes must be integers, got dtype ", dtype);
  at::Tensor index = codes.to(at::kCPU).to(at::kLong).flatten();
  if (dtype == at::kShort) index = index.bitwise_and(0xFFFF);  // int16 holds 16-bit patterns
  const int64_t n_centroids = codebook_.size(0);
  if (index.numel() > 0) {
    const int64_t low = index.min().item<int64_t>();
    const int64_t high = index.max().item<int64_t>();
    QNOISE_CHECK(low >= 0, "codes must be >= 0, got ", low);
    QNOISE_CHECK(high < n_centroids, "code ", high, " is out of range for K = ", n_centroids,
                 " centroids");
  }
  return codebook_.index_select(0, index).to(codes.device());
}

void ProductQuantizer::set_codebook(const at::Tensor& codebook) {
  at::Tensor checked = checked_float_matrix(codebook, block_size_, "codebook rows");
  check_centroid_range(checked.size(0));
  codebook_ = checked.data_ptr() == codebook.data_ptr() ? checked.clone() : checked;
  options_.n_centroids = codebook_.size(0);
}

double relative_error(const at::Tensor& original, const at::Tensor& reconstructed) {
  QNOISE_CHECK(original.defined() && reconstructed.defined(),
               "relative_error needs two defined tensors");
  QNOISE_CHECK(original.sizes() == reconstructed.sizes(), "relative_error needs equal shapes, got ",
               shape_to_string(original.sizes().vec()), " and ",
               shape_to_string(reconstructed.sizes().vec()));
  const at::Tensor a = original.to(at::kCPU, at::kDouble);
  const at::Tensor b = reconstructed.to(at::kCPU, at::kDouble);
  const double reference = a.norm().item<double>();
  const double difference = (a - b).norm().item<double>();
  if (reference == 0.0) return difference == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return difference / reference;
}

}  // namespace qnoise
