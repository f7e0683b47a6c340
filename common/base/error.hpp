// Error values for operations that fail for reasons outside the program.
#pragma once

#include <expected>
#include <string>
#include <string_view>

namespace common {

// What failed and why, ready to log: "Failed to open '/x': Permission denied".
struct Error {
  std::string message;
  int sys_errno = 0; // errno of the failing call, 0 when not a system error

  // An error from a failed system call: `what` plus strerror(err).
  static Error from_errno(std::string what, int err);
};

template <typename T>
using Expected = std::expected<T, Error>;

// Shorthand for returning an error from a function returning Expected<T>.
inline std::unexpected<Error> fail(std::string message) {
  return std::unexpected(Error{std::move(message), 0});
}
inline std::unexpected<Error> fail_errno(std::string what, int err) {
  return std::unexpected(Error::from_errno(std::move(what), err));
}

// Quotes a path for messages: '<path>'. The exact-match overloads keep std::quoted (found by
// argument-dependent lookup on std::string) from being chosen instead.
std::string quoted(std::string_view path);
inline std::string quoted(const std::string& path) {
  return quoted(std::string_view(path));
}
inline std::string quoted(const char* path) {
  return quoted(std::string_view(path));
}

} // namespace common
