// A move-only owner of a file descriptor.
#pragma once

#include <utility>

namespace common {

class UniqueFd {
public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : m_fd(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : m_fd(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd() { reset(); }

  // The descriptor, or -1.
  int get() const { return m_fd; }
  explicit operator bool() const { return m_fd >= 0; }
  // Gives up ownership and returns the descriptor.
  int release() { return std::exchange(m_fd, -1); }
  // Closes the current descriptor (if any) and takes `fd`.
  void reset(int fd = -1);

private:
  int m_fd = -1;
};

} // namespace common
