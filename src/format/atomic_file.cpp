#include "qnoise/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "qnoise/error.h"

namespace qnoise {

namespace {

std::string system_error() { return std::strerror(errno); }

// The process's umask, read without changing it (umask(2) would, for every thread); 022 when
// /proc does not say.
mode_t current_umask() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "Umask:") {
      std::string value;
      status >> value;
      return static_cast<mode_t>(std::stoul(value, nullptr, 8));
    }
    status.ignore(1 << 16, '\n');
  }
  return 022;
}

// The mode a plain write would give the file: the old file's, or 0666 less the umask.
mode_t target_mode(const std::string& path) {
  struct stat existing {};
  if (stat(path.c_str(), &existing) == 0 && S_ISREG(existing.st_mode)) return existing.st_mode & 07777;
  return 0666 & ~current_umask();
}

bool write_all(int fd, const char* data, size_t left) {
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

// Makes the rename itself durable: the directory entry is on disk once this returns.
void sync_directory(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const int fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // some file systems do not open directories; the data itself is synced
  ::fsync(fd);
  ::close(fd);
}

// Temporaries of `path` are "<path>.tmp.<pid>.<random>": those of a writer that is gone (killed
// mid-write) are removed by the next write of the same file.
void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path folder = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string::npos || dot == 0 || rest.find_first_not_of("0123456789") != dot) continue;
    const pid_t writer = static_cast<pid_t>(std::stol(rest.substr(0, dot)));
    if (::kill(writer, 0) != 0 && errno == ESRCH) fs::remove(it->path(), error);
  }
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& content) {
  write_file_atomically(path, [&](const AppendBytes& append) { append(content.data(), content.size()); });
}

void write_file_atomically(const std::string& path, const std::function<void(const AppendBytes& append)>& produce) {
  remove_stale_temporaries(path);
  // mkstemp: an unpredictable name, created exclusively (never through a symlink someone planted).
  std::vector<char> name(path.begin(), path.end());
  const std::string suffix = ".tmp." + std::to_string(::getpid()) + ".XXXXXX";
  name.insert(name.end(), suffix.begin(), suffix.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0) throw Error("cannot write '" + path + "': cannot create a temporary file beside it: " + system_error());
  const std::string temporary(name.data());
  auto fail = [&](const std::string& failure) {
    ::close(fd);
    std::remove(temporary.c_str());
    throw Error("cannot write '" + path + "' (via temporary file '" + temporary + "'): " + failure);
  };
  if (::fchmod(fd, target_mode(path)) != 0) fail("cannot set its mode: " + system_error());
  std::string write_failure;
  try {
    produce([&](const void* data, size_t size) {
      if (!write_all(fd, static_cast<const char*>(data), size)) {
        write_failure = "cannot write it: " + system_error();
        throw Error(write_failure);
      }
    });
  } catch (...) {
    if (!write_failure.empty()) fail(write_failure);
    ::close(fd);
    std::remove(temporary.c_str());
    throw;
  }
  if (::fsync(fd) != 0) fail("cannot flush it to disk: " + system_error());
  if (::close(fd) != 0) {
    const std::string reason = system_error();
    std::remove(temporary.c_str());
    throw Error("cannot write '" + path + "' (via temporary file '" + temporary + "'): cannot close it: " + reason);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string reason = system_error();
    std::remove(temporary.c_str());
    throw Error("cannot rename '" + temporary + "' to '" + path + "': " + reason);
  }
  sync_directory(path);
}

}  // namespace qnoise
