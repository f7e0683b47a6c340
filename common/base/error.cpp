#include "common/base/error.hpp"

#include <cstring>

namespace common {

Error Error::from_errno(std::string what, int err) {
  return Error{std::move(what) + ": " + std::strerror(err), err};
}

std::string quoted(std::string_view path) {
  std::string out;
  out.reserve(path.size() + 2);
  out += '\'';
  out += path;
  out += '\'';
  return out;
}

} // namespace common
