#include "common/base/fd.hpp"

#include <unistd.h>

namespace common {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset(other.release());
  }
  return *this;
}

void UniqueFd::reset(int fd) {
  if (m_fd >= 0) {
    // Linux always releases the descriptor, even when close() reports EINTR,
    // so retrying would close somebody else's fd.
    ::close(m_fd);
  }
  m_fd = fd;
}

} // namespace common
