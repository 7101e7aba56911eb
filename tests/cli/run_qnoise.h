#pragma once
// Runs the built `qnoise` program (QNOISE_BINARY, qnoise_binary.h) with arguments, as a user would from a shell.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "qnoise_binary.h"

namespace qnoise::testing {

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// environment: "VAR=value ..." set for this run only.
inline CommandResult run_qnoise(const std::string& arguments, const std::string& environment = "") {
  const std::string command =
      (environment.empty() ? "" : "env " + environment + " ") + QNOISE_BINARY + " " + arguments + " 2>&1 </dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace qnoise::testing
