#include "qnoise/process_tuning.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "qnoise/error.h"

namespace qnoise {

namespace {
constexpr int kMmapThreshold = 32 << 20;  // glibc's largest allowed value on 64-bit
constexpr int kTrimThreshold = 1 << 30;
}  // namespace

void tune_process(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {  // a program without passive_openmp_environment.cpp
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
  }
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

RuntimeOptions runtime_options_from_environment(ThreadWaiting waiting) {
  RuntimeOptions options;
  if (const char* kernels = std::getenv("QNOISE_KERNELS")) {
    KernelPath path = KernelPath::Auto;
    try {
      path = parse_kernel_path(kernels);
    } catch (const Error&) {
      throw Error(std::string("QNOISE_KERNELS='") + kernels + "': expected reference, avx2, avx512 or auto");
    }
    options.kernel_path = resolve_kernel_path(path);  // a path the CPU lacks: an error now
  }
  const char* activations = std::getenv("QNOISE_ACTIVATIONS");
  if (activations != nullptr && activations[0] != '\0') {
    QNOISE_CHECK(std::strcmp(activations, "int8") == 0 || std::strcmp(activations, "float") == 0,
                 "QNOISE_ACTIVATIONS='", activations, "': expected int8 or float");
    options.int8_activations = std::strcmp(activations, "int8") == 0;
  }
  bool spin = waiting == ThreadWaiting::BriefSpin;
  const char* wait = std::getenv("QNOISE_WORKER_WAIT");
  if (wait != nullptr && wait[0] != '\0') {
    QNOISE_CHECK(std::strcmp(wait, "spin") == 0 || std::strcmp(wait, "sleep") == 0, "QNOISE_WORKER_WAIT='", wait,
                 "': expected spin or sleep");
    spin = std::strcmp(wait, "spin") == 0;
  }
  if (spin) options.tuning.use_spinning_workers();
  return options;
}

}  // namespace qnoise
