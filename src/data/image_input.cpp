#include "qnoise/image_input.h"

#include <ATen/ATen.h>

#include <cctype>
#include <fstream>
#include <iterator>

#include "qnoise/error.h"
#include "qnoise/idx_file.h"

namespace qnoise {

namespace {

std::string read_whole_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  QNOISE_CHECK(file.good(), "cannot open image file '", path, "'");
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  QNOISE_CHECK(!file.bad(), "error reading image file '", path, "'");
  return bytes;
}

// The PGM header after the magic: whitespace-separated decimal fields, '#' comments to the end of
// a line between them.
class PgmHeader {
 public:
  PgmHeader(const std::string& bytes, const std::string& path) : bytes_(bytes), path_(path) {}

  int64_t field(const char* name) {
    skip_space_and_comments();
    int64_t value = 0;
    size_t digits = 0;
    for (; pos_ < bytes_.size() && std::isdigit(static_cast<unsigned char>(bytes_[pos_])); ++pos_, ++digits) {
      QNOISE_CHECK(digits < 9, "'", path_, "': PGM ", name, " is too large");
      value = value * 10 + (bytes_[pos_] - '0');
    }
    QNOISE_CHECK(digits > 0, "'", path_, "': bad PGM header, expected the ", name, " (a number)");
    return value;
  }

  // The single whitespace character that ends the header; the pixels follow.
  size_t data_start() {
    QNOISE_CHECK(pos_ < bytes_.size() && std::isspace(static_cast<unsigned char>(bytes_[pos_])), "'", path_,
                 "': bad PGM header, expected whitespace after maxval");
    return pos_ + 1;
  }

 private:
  void skip_space_and_comments() {
    while (pos_ < bytes_.size()) {
      if (std::isspace(static_cast<unsigned char>(bytes_[pos_]))) {
        ++pos_;
      } else if (bytes_[pos_] == '#') {
        while (pos_ < bytes_.size() && bytes_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  const std::string& bytes_;
  const std::string& path_;
  size_t pos_ = 2;  // after "P5"
};

bool starts_with(const std::string& bytes, const std::string& prefix) {
  return bytes.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

at::Tensor read_pgm(const std::string& path) {
  const std::string bytes = read_whole_file(path);
  QNOISE_CHECK(!starts_with(bytes, "P2"), "'", path, "' is an ASCII PGM (P2); only binary PGM (P5) is read");
  QNOISE_CHECK(starts_with(bytes, "P5"), "'", path, "' is not a binary PGM file (it does not start with P5)");
  PgmHeader header(bytes, path);
  const int64_t cols = header.field("width"), rows = header.field("height"), maxval = header.field("maxval");
  QNOISE_CHECK(cols > 0 && rows > 0, "'", path, "': PGM size ", cols, "x", rows, " is empty");
  QNOISE_CHECK(maxval >= 1 && maxval <= 65535, "'", path, "': PGM maxval must be in [1, 65535], got ", maxval);
  QNOISE_CHECK(maxval <= 255, "'", path, "': 16-bit PGM (maxval ", maxval, ") is not supported; use 8 bits");
  QNOISE_CHECK(rows * cols <= (int64_t{1} << 28), "'", path, "': PGM of ", cols, "x", rows, " pixels is too large");
  const size_t start = header.data_start();
  const auto pixels = static_cast<size_t>(rows * cols);
  const size_t available = bytes.size() - std::min(bytes.size(), start);
  QNOISE_CHECK(available >= pixels, "'", path, "' is truncated: ", cols, "x", rows, " pixels need ", pixels,
               " bytes, it has ", available);
  QNOISE_CHECK(available == pixels, "'", path, "' has ", available - pixels,
               " bytes after its image (only one image per PGM file is read)");
  at::Tensor image = at::empty({rows, cols}, at::kByte);
  std::copy(bytes.begin() + static_cast<std::ptrdiff_t>(start), bytes.end(), image.data_ptr<uint8_t>());
  if (maxval == 255) return image;
  QNOISE_CHECK(image.max().item<int64_t>() <= maxval, "'", path, "' has a pixel above its maxval ", maxval);
  return (image.to(at::kFloat) * (255.0 / static_cast<double>(maxval))).round().to(at::kByte);
}

at::Tensor read_images(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  QNOISE_CHECK(file.good(), "cannot open image file '", path, "'");
  char magic[4] = {0, 0, 0, 0};
  file.read(magic, 4);
  const std::string start(magic, static_cast<size_t>(file.gcount()));
  if (starts_with(start, "P5") || starts_with(start, "P2")) return read_pgm(path).unsqueeze(0);
  QNOISE_CHECK(!starts_with(start, "\x89PNG"), "'", path,
               "' is a PNG file, which qnoise does not read: convert it to PGM (e.g. `convert ", path,
               " -colorspace gray image.pgm`)");
  QNOISE_CHECK(!starts_with(start, "\xff\xd8"), "'", path,
               "' is a JPEG file, which qnoise does not read: convert it to PGM");
  const bool gzip = starts_with(start, "\x1f\x8b");
  const bool idx = start.size() >= 2 && start[0] == 0 && start[1] == 0;  // IDX magic: 0, 0, dtype, dims
  QNOISE_CHECK(gzip || idx, "'", path, "' is not an image file qnoise reads (an IDX image file or a binary PGM)");
  const at::Tensor images = read_idx_images(path);  // gzip or plain IDX; its own errors name what is wrong
  QNOISE_CHECK(images.size(0) > 0, "'", path, "' holds no images");
  QNOISE_CHECK(images.size(1) > 0 && images.size(2) > 0, "'", path, "': IDX images of ", images.size(2), "x",
               images.size(1), " pixels are empty");
  return images;
}

at::Tensor resize_images(const at::Tensor& images, int64_t out_rows, int64_t out_cols) {
  QNOISE_CHECK(images.dim() == 3 && images.scalar_type() == at::kByte,
               "resize_images needs uint8 [n, rows, cols], got ", images.scalar_type(), " ", images.sizes());
  QNOISE_CHECK(out_rows > 0 && out_cols > 0, "resize_images: bad size ", out_rows, "x", out_cols);
  // libtorch's resampling refuses empty images with an error of its own.
  QNOISE_CHECK(images.size(1) > 0 && images.size(2) > 0, "resize_images: images of ", images.size(2), "x",
               images.size(1), " pixels are empty");
  if (images.size(1) == out_rows && images.size(2) == out_cols) return images;
  // Nothing to resize; libtorch would still allocate for the (unbounded) input size.
  if (images.size(0) == 0) return at::empty({0, out_rows, out_cols}, at::kByte);
  const at::Tensor resized =
      at::_upsample_bilinear2d_aa(images.unsqueeze(1).to(at::kFloat), {out_rows, out_cols}, /*align_corners=*/false);
  return resized.squeeze(1).round().clamp(0, 255).to(at::kByte);
}

}  // namespace qnoise
