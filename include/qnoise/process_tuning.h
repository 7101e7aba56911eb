#pragma once
// Process-wide settings that programs built on qnoise should make first thing in main().

namespace qnoise {

// 1. libgomp's worker threads spin after every parallel region; on a machine with few cores they
//    take the cores OpenBLAS's threads need, and parallel regions then wait a whole scheduler
//    tick (measured on 2 cores: a 16 MB tensor copy took 8 ms instead of 1.4 ms). libgomp reads
//    OMP_WAIT_POLICY only when it loads, so this sets it to "passive" and restarts the program
//    once (execv of /proc/self/exe). A value the user set is left alone.
//    ThreadWaiting::BriefSpin (generating text from a compressed model: small layers back to back,
//    each split over threads, little OpenBLAS) also sets GOMP_SPINCOUNT so that the workers spin
//    briefly before sleeping: waking a sleeping worker costs more than a 1024-wide layer's work
//    (docs/performance.md, "Workers that spin"). The packed layers then split smaller layers
//    (runtime::linear_tuning()).
// 2. glibc hands large freed blocks back to the kernel and faults fresh pages in on the next
//    allocation; a training step allocates the same large tensors every time (measured: 13,000
//    page faults and +50% backward time per step of a 1024-4096-1024 MLP). Raise the mmap and
//    trim thresholds so those blocks are kept and reused.
enum class ThreadWaiting { Passive, BriefSpin };
void tune_process(char** argv, ThreadWaiting waiting = ThreadWaiting::Passive);

// Whether libgomp's workers spin after a parallel region, read from the environment as libgomp
// does: GOMP_SPINCOUNT other than 0 whatever the policy; without it, any policy but passive.
bool openmp_workers_spin();

}  // namespace qnoise
