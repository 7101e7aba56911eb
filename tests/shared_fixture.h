#pragma once
// Files that many tests share (a trained checkpoint, small .qnz models, a corpus), made once per
// ctest run: ctest's SharedFixtures.Make (a FIXTURES_SETUP test, tests/CMakeLists.txt) empties
// $QNOISE_TEST_FIXTURES and makes them there, and every test after it reads them. A test program
// run by hand, without the variable, makes each file once in its own temporary directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

namespace qnoise::testing {

// The path of shared file (or directory) `name`, made by make(path) when it is not there yet.
inline std::string shared_fixture(const std::string& name, const std::function<void(const std::string&)>& make) {
  namespace fs = std::filesystem;
  const char* dir = std::getenv("QNOISE_TEST_FIXTURES");
  const fs::path path = dir != nullptr && dir[0] != '\0'
                            ? fs::path(dir) / name
                            : fs::path(::testing::TempDir()) / ("qnoise_" + std::to_string(getpid()) + "_" + name);
  if (fs::exists(path)) return path.string();
  fs::create_directories(path.parent_path());
  // Made under a name of this process, then renamed: a test beside this one sees all of it or none.
  const std::string part = path.string() + ".part" + std::to_string(getpid());
  fs::remove_all(part);
  make(part);
  std::error_code error;
  fs::rename(part, path, error);
  if (error) fs::remove_all(part);  // another process made it first
  return path.string();
}

}  // namespace qnoise::testing
