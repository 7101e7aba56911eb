#include "qnoise/version.h"

namespace qnoise {
std::string version() { return QNOISE_VERSION; }
}  // namespace qnoise
