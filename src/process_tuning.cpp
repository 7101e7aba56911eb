#include "qnoise/process_tuning.h"

#include <malloc.h>
#include <unistd.h>

#include <strings.h>

#include <cstdlib>
#include <cstring>

namespace qnoise {

namespace {
constexpr int kMmapThreshold = 32 << 20;  // glibc's largest allowed value on 64-bit
constexpr int kTrimThreshold = 1 << 30;
// Spin iterations before a worker sleeps (a fraction of a millisecond): 20,000 and 100,000 gave the
// same tokens/s on the large LM at 2 threads; OpenBLAS's float side lost more at 100,000.
constexpr const char* kBriefSpinCount = "20000";
}  // namespace

void tune_process(char** argv, ThreadWaiting waiting) {
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    // libgomp's GOMP_SPINCOUNT overrides the policy's spin count (0 for passive).
    if (waiting == ThreadWaiting::BriefSpin && std::getenv("GOMP_SPINCOUNT") == nullptr)
      setenv("GOMP_SPINCOUNT", kBriefSpinCount, 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
  }
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

bool openmp_workers_spin() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (spin != nullptr) return std::strspn(spin, "0 ") < std::strlen(spin);  // anything but 0
  return policy == nullptr || strcasecmp(policy, "active") == 0;
}

}  // namespace qnoise
