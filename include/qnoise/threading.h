#pragma once
// Process-wide threading set-up for programs built on qnoise.

namespace qnoise {

// libgomp's worker threads spin after every parallel region; on a machine with few cores they
// take the cores OpenBLAS's threads need, and parallel regions then wait a whole scheduler tick
// (measured on 2 cores: a 16 MB tensor copy took 8 ms instead of 1.4 ms). libgomp reads
// OMP_WAIT_POLICY only when it loads, so this sets it to "passive" and restarts the program
// once (execv of /proc/self/exe). A value the user set is left alone. Call it first in main().
void restart_with_passive_openmp(char** argv);

}  // namespace qnoise
