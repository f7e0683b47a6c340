// The uploader's durable state, one small JSON file per crash in its own directory (never in
// the store, which it only reads): what is done, how many attempts, the last error, the next try.
// It survives restarts of the uploader, the host and the server.
#pragma once

#include "common/base/error.hpp"
#include "common/store/upload_state.hpp"

#include <cstdint>
#include <string>

namespace uploader {

// Where a crash's core stands; the format is shared with retention (common/store/upload_state).
using CoreState = common::UploadCoreState;

struct CrashState {
  std::string id;
  bool record_done = false;
  bool indexed = false; // the day's index object lists it
  CoreState core = CoreState::pending;
  uint64_t attempts = 0;  // failed attempts so far
  std::string last_error; // of the last failed attempt; empty once done
  int64_t next_try = 0;   // epoch seconds; 0 = at once
  int64_t first_seen = 0; // epoch seconds the uploader first saw the crash
  int64_t done_time = 0;  // epoch seconds everything was done; 0 = pending

  bool finished() const { return record_done && indexed && core != CoreState::pending; }
};

// The state directory, opened once; files are <id>.json, written atomically.
class StateDir {
public:
  static common::Expected<StateDir> open(const std::string& path);
  // The crash's state, or a fresh one (first_seen = now) when there is none or it is unreadable.
  CrashState load(const std::string& id, int64_t now) const;
  common::Expected<void> save(const CrashState& state) const;
  int fd() const { return m_fd; }
  const std::string& path() const { return m_path; }

  StateDir(StateDir&&) noexcept;
  StateDir& operator=(StateDir&&) = delete;
  ~StateDir();

private:
  StateDir(std::string path, int fd) : m_path(std::move(path)), m_fd(fd) {}
  std::string m_path;
  int m_fd = -1;
};

// The delay before attempt `attempts` + 1: exponential from 10 s, at most an hour, times a
// random factor in [0.5, 1.5) so that hosts failing together do not retry together.
int64_t backoff_seconds(uint64_t attempts);

} // namespace uploader
