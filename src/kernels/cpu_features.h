#pragma once
// What the CPU (and the OS, which must save the wider registers) supports, for run-time dispatch
// of the SIMD kernels: the library is compiled for portable x86-64 and each kernel file with its
// own flags.

namespace qnoise::kernels {

// AVX2 and FMA.
bool cpu_has_avx2_fma();
// AVX2, FMA and AVX-512 F, BW, VL, VNNI (vpdpbusd: four u8 x s8 products added into each int32
// lane in one instruction) and VBMI (vpermi2b: 64 byte lookups in a 128-byte table), as on Intel
// Ice Lake and later and AMD Zen 4 and later.
bool cpu_has_avx512_vnni_vbmi();

}  // namespace qnoise::kernels
