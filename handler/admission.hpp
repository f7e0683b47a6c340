// Admission control: how many full captures run at once, and the exact per-executable rate
// limit. Both rest on flock()s of root-only files under the runtime directory, which the kernel
// releases when a handler exits or dies, and which no unprivileged user can open (or hold).
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"
#include "common/store/store.hpp"

#include <chrono>
#include <string>
#include <utility>

namespace handler {

// Opens (creating it mode 0700 when missing) the runtime directory, e.g. /run/process-core.
// Must run as root, before privileges are dropped.
common::Expected<common::UniqueFd> open_runtime_dir(const std::string& path);

// Tries the capture slots `capture.0` … `capture.<max-1>` without waiting. Returns the held slot,
// or an empty descriptor when all are taken (the caller goes lean).
common::Expected<common::UniqueFd> try_capture_slot(int runtime_dir, unsigned max_captures);

// The rate-limit lock file for an executable's store component: one of a fixed number of
// buckets (hash of the name), so hostile names cannot make the runtime directory grow.
common::Expected<common::UniqueFd> open_rate_lock(int runtime_dir, const std::string& exe);

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

// Cores of executable component `exe` taken in the last `interval` seconds, under every host
// directory: committed cores (by mtime) and reservations of captures still running, counted
// once per record id. %h is the crasher's to choose, so the count never depends on it.
// Reservations nobody holds any more (their handler died) are removed, not counted. Call it
// under the executable's rate-limit lock.
unsigned recent_cores(const common::Store& store, const std::string& exe, unsigned interval);

// The reservation a capture holds in its executable directory from the rate-limit decision
// until its core is committed or abandoned: ".#<id>.reserved", created and flock()ed (the lock
// says its handler is alive). Call it under the executable's rate-limit lock.
common::Expected<common::UniqueFd> reserve_core(int exe_dir, const std::string& id);
// Removes the reservation (the core is linked, or there will be none).
void release_reservation(int exe_dir, const std::string& id, common::UniqueFd fd);

} // namespace handler
