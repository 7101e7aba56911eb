#pragma once
#include <string>

namespace qnoise {
// The library version, e.g. "0.1.0".
std::string version();
}  // namespace qnoise
