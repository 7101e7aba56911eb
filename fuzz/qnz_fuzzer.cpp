// The .qnz reader (qnz_file.h): container, metadata and every weight's parts. A file that reads
// must decode, and write back to a file that reads to the same weights.

#include "fuzz_input.h"
#include "qnoise/qnz_file.h"

namespace {

// Decoding a PQ weight multiplies its codes by the block size: bound what one input may build.
constexpr int64_t kMaxDecodedWeights = int64_t{1} << 24;

bool same_weights(const qnoise::CompressedModel& a, const qnoise::CompressedModel& b) {
  if (a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& [name, w] = a.tensors[i];
    const qnoise::CompressedWeight* v = b.find(name);
    if (v == nullptr || qnoise::describe_weight(*v) != qnoise::describe_weight(w)) return false;
    const auto parts = qnoise::stored_parts(w), other = qnoise::stored_parts(*v);
    for (size_t p = 0; p < parts.size(); ++p) {
      if (!qnoise::fuzz::same_tensor_bytes(parts[p].second.contiguous(), other[p].second.contiguous())) return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qnoise::fuzz::init_libtorch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnoise::fuzz::InputFile file(".qnz"), written(".written.qnz");
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const qnoise::CompressedModel model = qnoise::read_qnz(file.write(data, size));
    for (const auto& [name, w] : model.tensors)
      if (w.numel() <= kMaxDecodedWeights) w.decode();
    qnoise::write_qnz(written.path(), model);
    if (!same_weights(model, qnoise::read_qnz(written.path()))) qnoise::fuzz::fail("a .qnz does not read back as written");
  });
  return 0;
}
