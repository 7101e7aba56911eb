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

void tune_process(char** argv, ThreadWaiting waiting) {
  if (waiting == ThreadWaiting::BriefSpin) ask_for_spinning_workers();
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
  }
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

void ask_for_spinning_workers() { setenv("QNOISE_WORKER_WAIT", "spin", 0); }

bool packed_workers_spin() {
  const char* wait = std::getenv("QNOISE_WORKER_WAIT");
  if (wait == nullptr || wait[0] == '\0' || std::strcmp(wait, "sleep") == 0) return false;
  if (std::strcmp(wait, "spin") == 0) return true;
  throw Error(std::string("QNOISE_WORKER_WAIT='") + wait + "': expected spin or sleep");
}

}  // namespace qnoise
