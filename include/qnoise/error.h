#pragma once
// The one exception type qnoise throws for bad input: its message names the problem.
#include <sstream>
#include <stdexcept>
#include <string>

namespace qnoise {

class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

}  // namespace qnoise

// Throws qnoise::Error with the streamed message parts when `condition` is false.
#define QNOISE_CHECK(condition, ...)                                 \
  do {                                                               \
    if (!(condition)) throw ::qnoise::Error(::qnoise::detail::concat(__VA_ARGS__)); \
  } while (false)
