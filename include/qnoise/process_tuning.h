#pragma once
// Process-wide settings that programs built on qnoise should make first thing in main().

namespace qnoise {

// 1. libgomp's worker threads spin after every parallel region; on a machine with few cores they
//    take the cores OpenBLAS's threads need, and parallel regions then wait a whole scheduler
//    tick (measured on 2 cores: a 16 MB tensor copy took 8 ms instead of 1.4 ms). libgomp reads
//    OMP_WAIT_POLICY only when it loads, so this sets it to "passive" and restarts the program
//    once (execv of /proc/self/exe). A value the user set is left alone.
//    ThreadWaiting::BriefSpin (generating text from a compressed model: small layers back to back)
//    also sets QNOISE_WORKER_WAIT=spin (unless set): the packed layers' own worker threads
//    (src/runtime/worker_pool.h) then spin for a moment after each call instead of sleeping, since
//    waking a sleeping thread costs more than a 1024-wide layer's work, and the packed layers split
//    smaller layers over threads (runtime::linear_tuning()). OpenMP's workers stay passive: at
//    batch 1 libtorch's own operations between the layers rarely use them, and spinning they
//    would take the cores from ours (docs/performance.md, "Workers that spin").
// 2. glibc hands large freed blocks back to the kernel and faults fresh pages in on the next
//    allocation; a training step allocates the same large tensors every time (measured: 13,000
//    page faults and +50% backward time per step of a 1024-4096-1024 MLP). Raise the mmap and
//    trim thresholds so those blocks are kept and reused.
enum class ThreadWaiting { Passive, BriefSpin };
void tune_process(char** argv, ThreadWaiting waiting = ThreadWaiting::Passive);

// What BriefSpin adds, for a program that knows only after parsing its command line: sets
// QNOISE_WORKER_WAIT=spin unless the user set it. Call it before the first packed layer runs (the
// setting is read once).
void ask_for_spinning_workers();

// Whether the packed layers' workers spin between calls: QNOISE_WORKER_WAIT is "spin" (or "sleep",
// the default when unset). Throws qnoise::Error naming any other value.
bool packed_workers_spin();

}  // namespace qnoise
