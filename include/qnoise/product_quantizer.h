#pragma once
// Product quantization of weight blocks: one codebook of K centroids of dimension block_size,
// learned by k-means (EM). Like a faiss quantizer it knows blocks and codebooks only, not layers or
// files: cut a weight into blocks with BlockLayout first.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace qnoise {

enum class KMeansInit {
  Sampled,         // K distinct blocks drawn at random (fairseq's choice; cheapest)
  KMeansPlusPlus,  // D^2 seeding (Arthur & Vassilvitskii), better on clustered data
};

struct ProductQuantizerOptions {
  int64_t n_centroids = 256;  // K, 1..65536
  int n_iterations = 15;      // EM iterations
  KMeansInit init = KMeansInit::Sampled;
  uint64_t seed = 0;
  // Blocks per chunk in the distance computation, so memory stays bounded on large layers.
  int64_t chunk_blocks = 1 << 15;

  ProductQuantizerOptions& set_n_centroids(int64_t k) { n_centroids = k; return *this; }
  ProductQuantizerOptions& set_n_iterations(int n) { n_iterations = n; return *this; }
  ProductQuantizerOptions& set_init(KMeansInit i) { init = i; return *this; }
  ProductQuantizerOptions& set_seed(uint64_t s) { seed = s; return *this; }
};

// What k-means did, for tests and progress reports.
struct KMeansStats {
  // Sum over blocks of the squared distance to the assigned centroid, after each E-step.
  std::vector<double> objective;
  // How many empty clusters were repaired by splitting the most populated one.
  int64_t n_empty_repaired = 0;
};

class ProductQuantizer {
 public:
  ProductQuantizer(int64_t block_size, ProductQuantizerOptions options = {});

  // Learns the codebook from an [n_blocks, block_size] float matrix. Throws qnoise::Error on
  // empty or non-finite input, a wrong block size, or K outside 1..min(65536, n_blocks).
  KMeansStats train(const at::Tensor& blocks);
  // Same, starting EM from the given [K, block_size] codebook instead of the seeded init.
  KMeansStats train(const at::Tensor& blocks, const at::Tensor& initial_codebook);

  // Index of the nearest centroid of every block: uint8 when K <= 256, otherwise int16 holding
  // the index's 16 bits (read it back as `codes.to(kInt) & 0xFFFF`; libtorch 1.13 has no uint16).
  at::Tensor compute_codes(const at::Tensor& blocks) const;
  // [n, block_size] float blocks rebuilt from codes (any integer dtype, values < K).
  at::Tensor decode(const at::Tensor& codes) const;

  const at::Tensor& codebook() const { return codebook_; }
  void set_codebook(const at::Tensor& codebook);
  int64_t block_size() const { return block_size_; }
  int64_t n_centroids() const { return options_.n_centroids; }
  const ProductQuantizerOptions& options() const { return options_; }

  // The narrowest index dtype that holds K values: kByte for K <= 256, else kShort.
  static at::ScalarType index_dtype(int64_t n_centroids);

 private:
  int64_t block_size_;
  ProductQuantizerOptions options_;
  at::Tensor codebook_;  // [K, block_size] float32
};

// ||original - reconstructed||_F / ||original||_F.
double relative_error(const at::Tensor& original, const at::Tensor& reconstructed);

}  // namespace qnoise
