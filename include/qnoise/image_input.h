#pragma once
// Images from outside the data sets, for running an image classifier on them: IDX image files
// (any number of images) and binary PGM files (one grayscale image of any size), brought to the
// size the model was trained on. PNG and other formats need a decoding library qnoise does not
// use: convert them to PGM first (e.g. ImageMagick's `convert in.png -colorspace gray out.pgm`).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace qnoise {

// uint8 [rows, cols] from a binary PGM file ("P5", maxval at most 255; values scaled to 0..255
// when maxval is less; '#' comments in the header). Throws qnoise::Error naming the file for a
// missing file, a bad header, a 16-bit or ASCII PGM, or pixel data that is short or too long.
at::Tensor read_pgm(const std::string& path);

// uint8 [n, rows, cols] from an IDX image file (plain or gzip; see idx_file.h) or a PGM file
// (n = 1), told apart by their first bytes. Throws qnoise::Error naming the file otherwise (PNG
// and other formats named as such).
at::Tensor read_images(const std::string& path);

// uint8 [n, rows, cols] resized to [n, out_rows, out_cols] by antialiased bilinear interpolation
// (area-like when shrinking, as image programs do), rounded back to 8 bits; unchanged when the size
// is already right.
at::Tensor resize_images(const at::Tensor& images, int64_t out_rows, int64_t out_cols);

}  // namespace qnoise
