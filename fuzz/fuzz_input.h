#pragma once
// What every fuzz target shares: the contract it checks and the ways it hands bytes to a reader.
//
// The contract of qnoise's readers: bad input is a qnoise::Error, nothing else. A target calls the
// reader inside `expect_only_qnoise_errors`; any other exception escapes to libFuzzer, which
// reports it as a crash, as it does sanitizer reports, hangs and memory blow-ups.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <unistd.h>

#include "qnoise/error.h"

namespace qnoise::fuzz {

// Runs `read`; a qnoise::Error is the expected answer to bad bytes and is swallowed.
template <typename Read>
void expect_only_qnoise_errors(Read read) {
  try {
    read();
  } catch (const qnoise::Error&) {
  }
}

// A crash with a message: a property the target checks does not hold.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz target property violated: %s\n", what);
  std::abort();
}

// A file (or directory) that readers taking a path read the input from: one per process (libFuzzer
// runs one input at a time), in $TMPDIR, removed at exit.
class InputFile {
 public:
  explicit InputFile(const std::string& suffix) {
    const char* tmp = std::getenv("TMPDIR");
    path_ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/qnoise-fuzz-" +
            std::to_string(getpid()) + suffix;
  }
  ~InputFile() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // Replaces the file's contents with `size` bytes at `data`; returns its path.
  const std::string& write(const uint8_t* data, size_t size) const {
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    if (file == nullptr || (size > 0 && std::fwrite(data, 1, size, file) != size) || std::fclose(file) != 0)
      fail("cannot write the input file");
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One intra-op thread: the readers are serial, and a thread pool only slows each run down.
inline void init_libtorch() { at::set_num_threads(1); }

// Same dtype, shape and bytes (bytes, not values: a float NaN never equals itself). Both contiguous.
inline bool same_tensor_bytes(const at::Tensor& x, const at::Tensor& y) {
  return x.sizes().equals(y.sizes()) && x.scalar_type() == y.scalar_type() &&
         (x.nbytes() == 0 || std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0);
}

}  // namespace qnoise::fuzz
