#pragma once
// Which CPU kernels qnoise runs: the portable reference, AVX2+FMA, or AVX2+FMA with AVX-512 (VNNI
// integer products and VBMI byte lookups for int8 activations). Every path gives the reference's
// integer sums exactly; float sums may differ in their last bits. Torch-free.
#include <string>

namespace qnoise {

enum class KernelPath { Auto, Reference, Avx2, Avx512 };

// "auto", "reference", "avx2", "avx512".
const char* to_string(KernelPath path);
// The inverse of to_string ("" is auto); throws qnoise::Error naming the value otherwise.
KernelPath parse_kernel_path(const std::string& name);
// The path itself, or for Auto the widest this CPU runs. Throws qnoise::Error when the CPU lacks
// the instructions of the path asked for.
KernelPath resolve_kernel_path(KernelPath path);

}  // namespace qnoise
