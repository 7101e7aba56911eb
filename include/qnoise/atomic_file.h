#pragma once
// Files written whole or not at all: the content goes to a temporary file in the same directory
// (an unpredictable name, created exclusively: never through a planted symlink), is flushed to
// disk, and is renamed over the target, whose directory is then flushed too. Readers see the old
// file or the whole new one, never half of it; a failed write or a crash loses nothing already
// there. The new file gets the old one's mode, or 0666 less the umask.
#include <cstddef>
#include <functional>
#include <string>

namespace qnoise {

// Throws qnoise::Error naming the file and the system's reason when it cannot be written or
// renamed; the temporary file is removed on failure.
void write_file_atomically(const std::string& path, const std::string& content);

// The same, streamed: `produce` calls `append` with the content piece by piece, so a large file is
// never held whole in memory. An exception from `produce` removes the temporary and propagates.
using AppendBytes = std::function<void(const void* data, size_t size)>;
void write_file_atomically(const std::string& path, const std::function<void(const AppendBytes& append)>& produce);

}  // namespace qnoise
