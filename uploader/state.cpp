#include "uploader/state.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/store/store.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

namespace uploader {

namespace {

constexpr int64_t k_backoff_first = 10;
constexpr int64_t k_backoff_max = 3600;

} // namespace

common::Expected<StateDir> StateDir::open(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return common::fail_errno("Failed to create " + common::quoted(path), errno);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return common::fail_errno("Failed to open " + common::quoted(path), errno);
  }
  return StateDir(path, fd);
}

StateDir::StateDir(StateDir&& o) noexcept
    : m_path(std::move(o.m_path)), m_fd(std::exchange(o.m_fd, -1)) {}

StateDir::~StateDir() {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
}

CrashState StateDir::load(const std::string& id, int64_t now) const {
  CrashState s;
  s.id = id;
  s.first_seen = now;
  // A regular file reached without a link, bounded, never a FIFO's wait (as retention reads it).
  auto text = common::read_file(m_fd, id + ".json", common::k_max_upload_state_bytes);
  if (!text) {
    return s;
  }
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    return s; // unreadable: start over; a retried upload leaves the same objects
  }
  s.record_done = j.value("record_done", false);
  s.indexed = j.value("indexed", false);
  s.core = common::parse_upload_core_state(j.value("core", "pending")).value_or(CoreState::pending);
  s.attempts = j.value("attempts", uint64_t{0});
  s.last_error = j.value("last_error", "");
  s.next_try = j.value("next_try", int64_t{0});
  s.first_seen = j.value("first_seen", now);
  s.done_time = j.value("done_time", int64_t{0});
  return s;
}

common::Expected<void> StateDir::save(const CrashState& s) const {
  const nlohmann::json j = {{"id", s.id},
                            {"record_done", s.record_done},
                            {"indexed", s.indexed},
                            {"core", to_string(s.core)},
                            {"attempts", s.attempts},
                            {"last_error", s.last_error},
                            {"next_try", s.next_try},
                            {"first_seen", s.first_seen},
                            {"done_time", s.done_time}};
  return common::write_file_atomic(m_fd, s.id + ".json", j.dump() + "\n", 0640,
                                   common::Replace::yes);
}

int64_t backoff_seconds(uint64_t attempts) {
  int64_t base = k_backoff_first;
  for (uint64_t i = 1; i < attempts && base < k_backoff_max; ++i) {
    base *= 2;
  }
  base = std::min(base, k_backoff_max);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(base) * jitter(rng)));
}

} // namespace uploader
