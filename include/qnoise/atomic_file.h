#pragma once
// Files written whole or not at all: the content goes to a temporary name in the same directory
// (unique to this process) and is renamed over the target, so readers see the old file or the
// whole new one, never half of it, and a failed write loses nothing already there.
#include <string>

namespace qnoise {

// Throws qnoise::Error naming the file when it cannot be written or renamed; the temporary file
// is removed on failure.
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace qnoise
