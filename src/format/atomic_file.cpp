#include "qnoise/atomic_file.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "qnoise/error.h"

namespace qnoise {

void write_file_atomically(const std::string& path, const std::string& content) {
  const std::string temporary = path + ".tmp." + std::to_string(getpid());
  bool written = false;
  {
    std::ofstream file(temporary, std::ios::binary);
    if (file.good()) {
      file << content;
      file.close();
      written = !file.fail();
    }
  }
  if (!written) {
    std::remove(temporary.c_str());
    throw Error("cannot write '" + path + "' (via temporary file '" + temporary + "')");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::remove(temporary.c_str());
    throw Error("cannot rename '" + temporary + "' to '" + path + "': " + error.message());
  }
}

}  // namespace qnoise
