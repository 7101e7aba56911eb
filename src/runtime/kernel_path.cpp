// Which kernels the packed layers run, and the tuning switch points.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "qnoise/error.h"
#include "qnoise/packed_linear.h"
#include "qnoise/process_tuning.h"
#include "quant/cpu_features.h"
#include "runtime/linear_tuning.h"

namespace qnoise {

namespace {

KernelPath parse_path(const char* name) {
  if (std::strcmp(name, "reference") == 0) return KernelPath::Reference;
  if (std::strcmp(name, "avx2") == 0) return KernelPath::Avx2;
  if (std::strcmp(name, "avx512") == 0) return KernelPath::Avx512;
  if (std::strcmp(name, "auto") == 0 || name[0] == '\0') return KernelPath::Auto;
  throw Error(std::string("QNOISE_KERNELS='") + name + "': expected reference, avx2, avx512 or auto");
}

KernelPath resolve(KernelPath path) {
  switch (path) {
    case KernelPath::Reference: return path;
    case KernelPath::Avx2:
      QNOISE_CHECK(kernels::cpu_has_avx2_fma(), "the AVX2+FMA kernels were asked for, but this CPU lacks AVX2 or FMA");
      return path;
    case KernelPath::Avx512:
      QNOISE_CHECK(kernels::cpu_has_avx512_vnni_vbmi(),
                   "the AVX-512 kernels were asked for, but this CPU lacks AVX-512 F/BW/VL/VNNI/VBMI");
      return path;
    case KernelPath::Auto: break;
  }
  if (kernels::cpu_has_avx512_vnni_vbmi()) return KernelPath::Avx512;
  return kernels::cpu_has_avx2_fma() ? KernelPath::Avx2 : KernelPath::Reference;
}

std::atomic<int>& chosen_path() {
  static std::atomic<int> path{[] {
    const char* env = std::getenv("QNOISE_KERNELS");
    return static_cast<int>(resolve(env ? parse_path(env) : KernelPath::Auto));
  }()};
  return path;
}

std::atomic<bool>& int8_activations_on() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("QNOISE_ACTIVATIONS");
    if (env == nullptr || std::strcmp(env, "float") == 0 || env[0] == '\0') return false;
    if (std::strcmp(env, "int8") == 0) return true;
    throw Error(std::string("QNOISE_ACTIVATIONS='") + env + "': expected int8 or float");
  }()};
  return on;
}

}  // namespace

void set_int8_activations(bool enabled) { int8_activations_on() = enabled; }

bool int8_activations() { return int8_activations_on().load(); }

void set_kernel_path(KernelPath path) { chosen_path() = static_cast<int>(resolve(path)); }

KernelPath kernel_path() { return static_cast<KernelPath>(chosen_path().load()); }

const char* to_string(KernelPath path) {
  switch (path) {
    case KernelPath::Auto: return "auto";
    case KernelPath::Reference: return "reference";
    case KernelPath::Avx2: return "avx2";
    case KernelPath::Avx512: return "avx512";
  }
  return "?";
}

namespace runtime {
LinearTuning& linear_tuning() {
  static LinearTuning tuning = [] {
    LinearTuning t;
    if (packed_workers_spin()) t.use_spinning_workers();
    return t;
  }();
  return tuning;
}
}  // namespace runtime

}  // namespace qnoise
