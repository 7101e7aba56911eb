// The safetensors reader (safetensors.h): from memory and from a file, which must agree.
#include <ATen/ATen.h>

#include <functional>
#include <optional>

#include "fuzz_input.h"
#include "qnoise/safetensors.h"

namespace {

std::optional<qnoise::SafetensorsContents> read_or_nothing(const std::function<qnoise::SafetensorsContents()>& read) {
  std::optional<qnoise::SafetensorsContents> contents;
  qnoise::fuzz::expect_only_qnoise_errors([&] { contents = read(); });
  return contents;
}

bool same(const qnoise::SafetensorsContents& a, const qnoise::SafetensorsContents& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto &x = a.tensors[i], &y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || !qnoise::fuzz::same_tensor_bytes(x.tensor, y.tensor)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qnoise::fuzz::init_libtorch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qnoise::fuzz::InputFile file(".safetensors");
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const auto from_memory = read_or_nothing([&] { return qnoise::parse_safetensors(bytes, "fuzz input"); });
  const auto from_file = read_or_nothing([&] { return qnoise::read_safetensors(file.write(data, size)); });
  if (from_memory.has_value() != from_file.has_value()) qnoise::fuzz::fail("memory and file readers disagree");
  if (from_memory && !same(*from_memory, *from_file)) qnoise::fuzz::fail("memory and file readers read different tensors");
  return 0;
}
