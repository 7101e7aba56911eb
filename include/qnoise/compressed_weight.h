#pragma once
// One weight tensor in its stored (compressed) form, as in the .qnz file: what each scheme keeps,
// how many bytes that is, and how to rebuild the float weight. Like ggml's block formats, every
// scheme is a documented struct with an exact size:
//
//   float32 / float16   values                                   4 / 2 bytes per weight
//   int8                codes uint8 [numel], scale float32 [C],  1 byte per weight + 5 per channel
//                       zero_point uint8 [C]; w = (code - zero_point) * scale, per output channel
//   int4                codes packed two per byte (low nibble first) [ceil(numel / 2)], scale,
//                       zero_point as int8
//   pq                  codes uint8 (K <= 256) or uint16 [n_blocks], in BlockLayout order (row by
//                       row, blocks left to right), centroids float16 [K, block_size]; or, for
//                       small layers whose codebook would outweigh their codes, centroids as
//                       uint8 [K, block_size] (centroid_bits 8) or two per byte [K, ceil(d / 2)]
//                       (4), c = (code - centroid_zero_point) * centroid_scale for the codebook
//
// The weight's shape and, for pq, the layer kind and block size travel with it, so decode() needs
// nothing else. Each scheme's parts, checks and decoding are its entry in the scheme traits table
// (weight_scheme_traits.h), which the methods below call through.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/scalar_quantizer.h"

namespace qnoise {

enum class WeightScheme { Float32, Float16, Int8, Int4, PQ };

std::string to_string(WeightScheme scheme);  // "float32", "float16", "int8", "int4", "pq"
// Throws qnoise::Error naming the accepted names.
WeightScheme parse_weight_scheme(const std::string& name);

struct CompressedWeight {
  WeightScheme scheme = WeightScheme::Float32;
  std::vector<int64_t> shape;  // of the float weight
  at::Tensor values;           // float32 / float16: the weight itself, in that dtype
  at::Tensor codes;            // int8: uint8 [numel]; int4: uint8 [ceil(numel/2)]; pq: uint8 or int16 [n_blocks]
  at::Tensor scale;            // int8 / int4: float32 [channels]
  at::Tensor zero_point;       // int8 / int4: uint8 [channels]
  at::Tensor centroids;        // pq: float16 [K, block_size], or uint8 codes (see centroid_bits)
  LayerKind layer_kind = LayerKind::Linear;  // pq: how rows are cut into blocks
  int64_t block_size = 1;                    // pq
  int centroid_bits = 16;                    // pq: 16 (float16), 8 or 4 (affine per codebook)
  float centroid_scale = 1.0f;               // pq, centroid_bits 8 / 4
  int64_t centroid_zero_point = 0;           // pq, centroid_bits 8 / 4

  int64_t numel() const;
  // Bytes of every stored tensor of the scheme together (as in the .qnz file).
  int64_t stored_bytes() const;
  double bits_per_weight() const { return 8.0 * static_cast<double>(stored_bytes()) / static_cast<double>(numel()); }
  int64_t n_centroids() const { return centroids.defined() ? centroids.size(0) : 0; }
  BlockLayout layout() const { return BlockLayout(layer_kind, shape, block_size); }
  // pq: the codebook as float32 [K, block_size], as stored.
  at::Tensor decoded_centroids() const;
  // The float32 weight. Throws qnoise::Error when the parts do not fit together (wrong sizes,
  // codes >= K, zero points beyond the code range): decode() is also the validator for weights read
  // from files.
  at::Tensor decode() const;
  // Checks what decode() checks without decoding.
  void validate() const;
};

CompressedWeight compress_float(const at::Tensor& weight, WeightScheme scheme /* Float32 or Float16 */);
// Affine int8 / int4 (bits 8 or 4) with the given clipping observer, one range per output channel,
// or one for the whole tensor (per_channel false; stored repeated per channel, the layout the
// kernels read).
CompressedWeight compress_scalar(const at::Tensor& weight, int bits, ScalarObserver observer = ScalarObserver::MinMax,
                                 bool per_channel = true);
// PQ from a layout, a float codebook [K, block_size] and codes (as ProductQuantizer gives them);
// the codebook is stored in centroid_bits (16: float16; 8 or 4: affine min-max over the codebook).
CompressedWeight compress_pq(const BlockLayout& layout, const at::Tensor& codebook, const at::Tensor& codes,
                             int centroid_bits = 16);
// The codebook as compress_pq stores and decodes it (float32), for training what will be stored.
at::Tensor round_centroids(const at::Tensor& codebook, int centroid_bits);
// Throws qnoise::Error unless bits is 16, 8 or 4.
void check_centroid_bits(int bits);

}  // namespace qnoise
