// Admission control: how many full captures run at once (in all and per uid), and the exact rate
// limit per (uid, executable). All rest on locks of root-only files under the runtime directory,
// which the kernel releases when a handler exits or dies, and which no unprivileged user can open
// (or hold). The handler's step 5 over them, admit_capture(), is declared in handler/steps.hpp;
// the storage policy that counts the rate limit under them is handler/policy.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"
#include "common/store/store.hpp"

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>

namespace handler {

// Holds an flock() for its lifetime.
class LockGuard {
public:
  LockGuard() = default;
  explicit LockGuard(int fd) : m_fd(fd) {}
  LockGuard(LockGuard&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  LockGuard& operator=(LockGuard&& other) noexcept;
  ~LockGuard();
  explicit operator bool() const { return m_fd >= 0; }

private:
  int m_fd = -1;
};

// Takes an exclusive flock() on `fd`, retrying until `timeout`; an empty guard on timeout.
LockGuard lock_within(int fd, std::chrono::milliseconds timeout);

// Cores of executable component `exe` taken in the last `interval` seconds for `owner`, under
// every host directory: committed cores (by mtime) and reservations of captures still running,
// counted once per record id. A core is `owner`'s when its live reservation or else its record
// names that uid; one with neither (its handler died before the record) counts for nobody. A
// missing `owner` (no %u) counts every core of the executable. %h is the crasher's to choose, so
// the count never depends on it. Reservations nobody holds any more (their handler died) are
// removed, not counted. Call it under the executable's rate-limit lock.
unsigned recent_cores(const common::Store& store, const std::string& exe,
                      std::optional<uid_t> owner, unsigned interval);

// The reservation a capture holds in its executable directory from the rate-limit decision
// until its record is committed or the run ends: ".#<id>.reserved", created and flock()ed (the
// lock says its handler is alive), holding the uid it counts for (empty without one). Call it
// under the executable's rate-limit lock.
common::Expected<common::UniqueFd> reserve_core(int exe_dir, const std::string& id,
                                                std::optional<uid_t> owner);
// Removes the reservation (the record is linked, or there will be none).
void release_reservation(int exe_dir, const std::string& id, common::UniqueFd fd);

} // namespace handler
