#pragma once
// The Quant-Noise operator (Fan et al., 2021): in every training forward pass, a fresh random
// subset of a weight's blocks (each chosen with probability `rate`) is distorted by a noise
// function; the result is a *new* tensor whose gradient passes straight through to the float
// weight. The parameter itself is never modified (fairseq's in-place version makes weights decay).
// rate = 1 is quantization-aware training, rate = 0 or eval mode is the identity.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "qnoise/block_layout.h"
#include "qnoise/scalar_quantizer.h"

namespace qnoise {

enum class NoiseKind {
  PQ,       // proxy for product quantization: chosen blocks zeroed, the rest scaled by 1/(1-rate)
  Scalar,   // chosen weights replaced by their fake-quantized (int8, int4, ...) value
  PQExact,  // chosen blocks replaced by their nearest centroid of a given codebook
};

struct NoiseFunction {
  NoiseKind kind = NoiseKind::PQ;
  ScalarQuantizerOptions scalar;  // for Scalar
  at::Tensor codebook;            // for PQExact: [K, block_size]

  static NoiseFunction pq() { return {}; }
  static NoiseFunction fake_quant(ScalarQuantizerOptions options);
  static NoiseFunction pq_exact(at::Tensor codebook);
  // "pq", "int8", "int4", "int<N>" (N in 2..8); "pq-exact" needs a codebook, so use pq_exact().
  static NoiseFunction parse(const std::string& name);
  std::string name() const;
};

// Returns `weight` itself when !training or rate == 0. Otherwise draws a fresh mask from torch's
// default generator (torch::manual_seed makes runs repeatable) and returns the noisy weight.
// Throws qnoise::Error for a rate outside [0, 1], pq noise with rate 1 (nothing would survive),
// a weight that does not fit the layout, or a codebook whose width is not the block size.
at::Tensor quant_noise(const at::Tensor& weight, const BlockLayout& layout, double rate,
                       const NoiseFunction& function, bool training = true);

// The same, writing the noisy weight into a buffer kept in *workspace (allocated on first use)
// whenever nothing but the workspace holds that buffer any more, i.e. once the previous step's
// autograd graph is gone. Training loops then reuse one buffer per layer instead of making the
// allocator fault in fresh pages every step (measured: 10,000 page faults and +40% time per step
// of a 1024-4096-1024 MLP without it).
at::Tensor quant_noise(const at::Tensor& weight, const BlockLayout& layout, double rate,
                       const NoiseFunction& function, bool training, at::Tensor* workspace);

// The same with an explicit mask seed: the mask is a pure function of (seed, block index),
// identical on every device and thread count.
at::Tensor quant_noise_with_seed(const at::Tensor& weight, const BlockLayout& layout, double rate,
                                 const NoiseFunction& function, uint64_t seed, at::Tensor* workspace = nullptr);

// The blocks quant_noise_with_seed distorts: bool [n_blocks], true = noised. The rate is honoured
// to a resolution of 2^-16.
at::Tensor quant_noise_mask(const BlockLayout& layout, double rate, uint64_t seed);

// Plain tensor-op implementation given an explicit block mask, without the straight-through
// wrapper: the specification the fused CPU kernels are tested against.
at::Tensor apply_noise_reference(const at::Tensor& weight, const BlockLayout& layout,
                                 const at::Tensor& block_mask, double rate,
                                 const NoiseFunction& function);

}  // namespace qnoise
