// The IDX reader (idx_file.h), plain and gzip. The first byte picks the form: odd, the rest of the
// input is gzip-compressed here first, so mutations reach the IDX header behind a valid gzip
// stream; even, the rest is the file as it is (corrupt gzip streams included).
#include <zlib.h>

#include <string>

#include "fuzz_input.h"
#include "qnoise/idx_file.h"

namespace {

std::string gzip(const uint8_t* data, size_t size) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16 /* gzip header */, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    qnoise::fuzz::fail("deflateInit2");
  std::string out(deflateBound(&stream, size), '\0');
  stream.next_in = const_cast<Bytef*>(data);
  stream.avail_in = static_cast<uInt>(size);
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) qnoise::fuzz::fail("deflate");
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qnoise::fuzz::init_libtorch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return -1;
  static const qnoise::fuzz::InputFile file(".idx");
  std::string bytes = (data[0] & 1) ? gzip(data + 1, size - 1) : std::string(data + 1, data + size);
  const std::string& path = file.write(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const at::Tensor idx = qnoise::read_idx_file(path);
    if (idx.numel() > 0 && idx.data_ptr() == nullptr) qnoise::fuzz::fail("IDX data without memory");
  });
  qnoise::fuzz::expect_only_qnoise_errors([&] { qnoise::read_idx_images(path); });
  return 0;
}
