#pragma once
// Process-wide settings that programs built on qnoise (the `qnoise` program, the benchmarks) make
// first thing in main(), and the environment variables they read. Not part of the libraries: they
// take every setting as a value (RuntimeOptions).

#include "qnoise/runtime_options.h"

namespace qnoise {

// 1. libgomp's worker threads spin after every parallel region; on a machine with few cores they
//    take the cores OpenBLAS's threads need, and parallel regions then wait a whole scheduler
//    tick (docs/kernels.md, "Process settings"). libgomp reads OMP_WAIT_POLICY only when it
//    loads, before main(), so a program sets it earlier still with QNOISE_PASSIVE_OPENMP_AT_LOAD()
//    (below). A program without that hook is restarted once by tune_process (execv of
//    /proc/self/exe) with the variable set. A value the user set is left alone.
//    The packed layers' own worker threads are set apart (LinearTuning::spinning_workers): at
//    batch 1 libtorch's own operations between the layers rarely use OpenMP's, and spinning they
//    would take the cores from ours (docs/kernels.md, "Workers that spin").
// 2. glibc hands large freed blocks back to the kernel and faults fresh pages in on the next
//    allocation; a training step allocates the same large tensors every time, and pays for the
//    page faults (docs/kernels.md, "Process settings"). Raise the mmap and trim thresholds so
//    those blocks are kept and reused.
enum class ThreadWaiting { Passive, BriefSpin };
void tune_process(char** argv);

// Sets OMP_WAIT_POLICY=passive unless the user set it; what QNOISE_PASSIVE_OPENMP_AT_LOAD runs.
extern "C" void qnoise_set_passive_openmp_waiting(int argc, char** argv, char** envp);

}  // namespace qnoise

// Written once at namespace scope in a program's main file: an entry of the executable's
// .preinit_array, whose functions the dynamic loader runs before the initializers of any shared
// library (System V gABI, "Initialization and Termination Functions"), so libgomp's reads the
// variable already set. Only executables have a .preinit_array: a library cannot do this.
#define QNOISE_PASSIVE_OPENMP_AT_LOAD()                                                         \
  __attribute__((section(".preinit_array"), used)) static void (*const qnoise_preinit_openmp_)( \
      int, char**, char**) = &qnoise::qnoise_set_passive_openmp_waiting

namespace qnoise {

// The packed layers' options as the environment says: QNOISE_KERNELS (reference, avx2, avx512 or
// auto), QNOISE_ACTIVATIONS (int8 or float) and QNOISE_WORKER_WAIT (spin or sleep; unset: spin for
// ThreadWaiting::BriefSpin, as `qnoise generate` runs small layers back to back, else sleep).
// Throws qnoise::Error naming a variable with any other value.
RuntimeOptions runtime_options_from_environment(ThreadWaiting waiting = ThreadWaiting::Passive);

}  // namespace qnoise
