#include "kernels/cpu_features.h"

namespace qnoise::kernels {

// libgcc checks that the OS saves the YMM (and, for AVX-512, ZMM and mask) registers before it
// reports these features.
bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512_vnni_vbmi() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

}  // namespace qnoise::kernels
