// Image input for `qnoise predict` (image_input.h): PGM or IDX, told apart by their first bytes,
// then resized to the 28x28 the image models take.
#include <ATen/ATen.h>

#include "fuzz_input.h"
#include "qnoise/image_input.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qnoise::fuzz::init_libtorch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnoise::fuzz::InputFile file(".image");
  const std::string& path = file.write(data, size);
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const at::Tensor images = qnoise::read_images(path);
    if (images.dim() != 3 || images.scalar_type() != at::kByte) qnoise::fuzz::fail("images are not uint8 [n, rows, cols]");
    // Resizing costs per output pixel: bound it (a gzip IDX file may hold many images).
    if (images.size(0) <= 64) qnoise::resize_images(images, 28, 28);
  });
  return 0;
}
