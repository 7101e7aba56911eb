// Linked into the qnoise program and the benchmarks (not into any library): the environment as
// every library of the process reads it, except that OMP_WAIT_POLICY reads "passive" when it is
// unset (process_tuning.h, 1). libgomp reads the variable in its initializer, which runs before
// main() and before anything main() could set; an executable's definitions take precedence over a
// shared library's in symbol lookup (the ELF rule that lets programs replace malloc), so libgomp's
// getenv and secure_getenv calls come here. Values the user set are returned as they are.
#include <sys/auxv.h>

#include <cstdlib>
#include <cstring>

extern char** environ;

namespace {

constexpr const char* kWaitPolicy = "OMP_WAIT_POLICY";

// glibc's getenv: the value of the first "NAME=value" entry of environ.
char* find_variable(const char* name) noexcept {
  if (name == nullptr || environ == nullptr || name[0] == '\0' || std::strchr(name, '=') != nullptr) return nullptr;
  const size_t length = std::strlen(name);
  for (char** entry = environ; *entry != nullptr; ++entry)
    if (std::strncmp(*entry, name, length) == 0 && (*entry)[length] == '=') return *entry + length + 1;
  return nullptr;
}

}  // namespace

extern "C" char* getenv(const char* name) noexcept {
  char* value = find_variable(name);
  if (value == nullptr && name != nullptr && std::strcmp(name, kWaitPolicy) == 0) {
    static char passive[] = "passive";
    return passive;
  }
  return value;
}

// As glibc's: nothing in a setuid or otherwise secure process.
extern "C" char* secure_getenv(const char* name) noexcept { return getauxval(AT_SECURE) != 0 ? nullptr : getenv(name); }
