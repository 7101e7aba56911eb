#pragma once
// Files written whole or not at all: the content goes to a temporary file in the same directory
// (an unpredictable name, created exclusively: never through a planted symlink), is flushed to
// disk, and is renamed over the target, whose directory is then flushed too. Readers see the old
// file or the whole new one, never half of it; a failed write or a crash loses nothing already
// there. The new file gets the old one's mode, or 0666 less the umask.
#include <string>

namespace qnoise {

// Throws qnoise::Error naming the file and the system's reason when it cannot be written or
// renamed; the temporary file is removed on failure.
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace qnoise
