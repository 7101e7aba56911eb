#pragma once
// IDX files, the format of MNIST and Fashion-MNIST: a 4-byte magic (0, 0, dtype, number of dims),
// one big-endian uint32 per dim, then the data in row-major order. Only the unsigned-byte dtype
// (0x08) is read; files may be plain or gzip-compressed (detected by the 1f 8b magic).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace qnoise {

inline constexpr uint32_t kIdxImagesMagic = 0x00000803;  // uint8 [n, rows, cols]
inline constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // uint8 [n]

// Reads any uint8 IDX file (1 to 8 dims) into a uint8 tensor of its dims. Throws qnoise::Error,
// naming the file, when it is missing or unreadable, its magic or dtype is wrong, its dims are
// absurd, or its data is truncated or followed by trailing bytes.
at::Tensor read_idx_file(const std::string& path);

// read_idx_file that also requires the magic `expected_magic` (so a dtype and a number of dims).
at::Tensor read_idx_file(const std::string& path, uint32_t expected_magic);

// uint8 [n, rows, cols] from a file with magic 0x00000803.
inline at::Tensor read_idx_images(const std::string& path) {
  return read_idx_file(path, kIdxImagesMagic);
}
// uint8 [n] from a file with magic 0x00000801.
inline at::Tensor read_idx_labels(const std::string& path) {
  return read_idx_file(path, kIdxLabelsMagic);
}

}  // namespace qnoise
