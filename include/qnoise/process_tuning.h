#pragma once
// Process-wide settings that programs built on qnoise (the `qnoise` program, the benchmarks) make
// first thing in main(), and the environment variables they read. Not part of the libraries: they
// take every setting as a value (RuntimeOptions).

#include "qnoise/runtime_options.h"

namespace qnoise {

// 1. libgomp's worker threads spin after every parallel region; on a machine with few cores they
//    take the cores OpenBLAS's threads need, and parallel regions then wait a whole scheduler
//    tick (docs/kernels.md, "Process settings"). libgomp reads OMP_WAIT_POLICY only when it
//    loads, before main(). The programs link src/cli/passive_openmp_environment.cpp, which makes
//    the variable read as "passive" when it is unset; a program without it is restarted once by
//    tune_process (execv of /proc/self/exe) with the variable set. A value the user set is left
//    alone.
//    The packed layers' own worker threads are set apart (LinearTuning::spinning_workers): at
//    batch 1 libtorch's own operations between the layers rarely use OpenMP's, and spinning they
//    would take the cores from ours (docs/kernels.md, "Workers that spin").
// 2. glibc hands large freed blocks back to the kernel and faults fresh pages in on the next
//    allocation; a training step allocates the same large tensors every time, and pays for the
//    page faults (docs/kernels.md, "Process settings"). Raise the mmap and trim thresholds so
//    those blocks are kept and reused.
enum class ThreadWaiting { Passive, BriefSpin };
void tune_process(char** argv);

// The packed layers' options as the environment says: QNOISE_KERNELS (reference, avx2, avx512 or
// auto), QNOISE_ACTIVATIONS (int8 or float) and QNOISE_WORKER_WAIT (spin or sleep; unset: spin for
// ThreadWaiting::BriefSpin, as `qnoise generate` runs small layers back to back, else sleep).
// Throws qnoise::Error naming a variable with any other value.
RuntimeOptions runtime_options_from_environment(ThreadWaiting waiting = ThreadWaiting::Passive);

}  // namespace qnoise
