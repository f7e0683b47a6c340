#include "handler/admission.hpp"

#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/sha256.hpp"
#include "common/store/record.hpp"
#include "common/store/record_summary.hpp"
#include "common/store/store.hpp"
#include "handler/context.hpp"
#include "handler/python_walk.hpp"
#include "handler/steps.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <map>
#include <set>
#include <thread>

namespace handler {

namespace {

// Rate-limit lock files: enough that unrelated executables rarely wait on each other (the lock
// is held for one walk of the store), few enough that a name flood cannot fill /run.
constexpr size_t k_rate_bucket_hex = 2; // 256 files
constexpr std::string_view k_reservation_suffix = ".reserved";
// Per-uid capture slots: bytes `uid * k_user_slot_stride + i` of one file. The stride is the
// largest max_captures_per_user the configuration accepts, so no two uids ever share a byte.
constexpr off_t k_user_slot_stride = 4096;
constexpr const char* k_user_slots = "user-slots";
// A reservation holds a uid in decimal, nothing else.
constexpr size_t k_reservation_max = 32;

common::Expected<common::UniqueFd> open_lock_file(int dir, const std::string& name) {
  // Root-only files in a root-only directory: the store user (and so a compromised exporter)
  // can neither open them nor hold their locks to stall a crash.
  const int fd =
      ::openat(dir, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0) {
    return common::fail_errno("Failed to open " + common::quoted(name), errno);
  }
  common::UniqueFd out(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) {
    return common::fail("refusing " + common::quoted(name) + ": not our regular file");
  }
  return out;
}

} // namespace

// Opens (creating it mode 0700 when missing) the runtime directory, e.g. /run/process-core.
// Must run as root, before privileges are dropped.
static common::Expected<common::UniqueFd> open_runtime_dir(const std::string& path) {
  auto dir = common::open_or_make_dir(AT_FDCWD, path, 0700);
  if (!dir) {
    return std::unexpected(dir.error());
  }
  struct stat st {};
  // Anyone else able to write here could plant the slot files and hold their locks.
  if (::fstat(dir->get(), &st) != 0 || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    return common::fail("refusing " + common::quoted(path) +
                        ": not owned by us or writable by others");
  }
  return dir;
}

// Tries the capture slots `capture.0` … `capture.<max-1>` without waiting. Returns the held slot,
// or an empty descriptor when all are taken (the caller goes lean).
static common::Expected<common::UniqueFd> try_capture_slot(int runtime_dir, unsigned max_captures) {
  for (unsigned i = 0; i < max_captures; ++i) {
    auto slot = open_lock_file(runtime_dir, "capture." + std::to_string(i));
    if (!slot) {
      return std::unexpected(slot.error());
    }
    if (::flock(slot->get(), LOCK_EX | LOCK_NB) == 0) {
      return std::move(*slot);
    }
    if (errno != EWOULDBLOCK) {
      return common::fail_errno("Failed to lock capture slot " + std::to_string(i), errno);
    }
  }
  return common::UniqueFd();
}

// Tries the `max_per_user` capture slots of `uid` without waiting: byte-range locks (open file
// description locks) in the one file `user-slots`, so that the directory never grows with the
// number of users. Returns the descriptor holding the slot, or an empty one when all are taken.
static common::Expected<common::UniqueFd> try_user_slot(int runtime_dir, uid_t uid,
                                                        unsigned max_per_user) {
  const unsigned slots = std::min<unsigned>(max_per_user, k_user_slot_stride);
  for (unsigned i = 0; i < slots; ++i) {
    // One open file description per attempt: an OFD lock belongs to the description, so the
    // slot is held exactly as long as the descriptor returned (and ends with the handler).
    auto file = open_lock_file(runtime_dir, k_user_slots);
    if (!file) {
      return std::unexpected(file.error());
    }
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = static_cast<off_t>(uid) * k_user_slot_stride + static_cast<off_t>(i);
    lock.l_len = 1;
    if (::fcntl(file->get(), F_OFD_SETLK, &lock) == 0) {
      return std::move(*file);
    }
    if (errno != EAGAIN && errno != EACCES) {
      return common::fail_errno("Failed to lock capture slot " + std::to_string(i) + " of uid " +
                                    std::to_string(uid),
                                errno);
    }
  }
  return common::UniqueFd();
}

// The rate-limit lock file for an executable's store component: one of a fixed number of
// buckets (hash of the name), so hostile names cannot make the runtime directory grow.
static common::Expected<common::UniqueFd> open_rate_lock(int runtime_dir, const std::string& exe) {
  return open_lock_file(runtime_dir, "rate." + common::sha256_hex(exe, k_rate_bucket_hex));
}

LockGuard::~LockGuard() {
  if (m_fd >= 0) {
    ::flock(m_fd, LOCK_UN);
  }
}

LockGuard& LockGuard::operator=(LockGuard&& other) noexcept {
  if (this != &other) {
    if (m_fd >= 0) {
      ::flock(m_fd, LOCK_UN);
    }
    m_fd = std::exchange(other.m_fd, -1);
  }
  return *this;
}

LockGuard lock_within(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      return LockGuard(fd);
    }
    if ((errno != EWOULDBLOCK && errno != EINTR) || std::chrono::steady_clock::now() > deadline) {
      return LockGuard();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

namespace {

std::string reservation_name(const std::string& id) {
  return ".#" + id + std::string(k_reservation_suffix);
}

// True when the handler that made the reservation still runs (it holds the lock). A dead one's
// reservation is removed: it would hold a place of the burst for a whole interval.
bool reservation_alive(int dirfd, const std::string& name) {
  const int fd =
      ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  const common::UniqueFd file(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return false;
  }
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    return errno == EWOULDBLOCK;
  }
  // Under the rate-limit lock no one can be between creating and locking a reservation.
  ::unlinkat(dirfd, name.c_str(), 0);
  return false;
}

// The uid a reservation counts for, if it names one.
std::optional<uid_t> reservation_owner(int dirfd, const std::string& name) {
  auto text = common::read_file(dirfd, name, k_reservation_max);
  if (!text) {
    return std::nullopt;
  }
  const auto uid = common::parse_number<uid_t>(*text);
  return uid ? std::optional<uid_t>(*uid) : std::nullopt;
}

// The uid of a committed core's record (%u, as the handler wrote it), if it can be read.
std::optional<uid_t> record_owner(int dirfd, std::string_view id) {
  auto text = common::read_file(dirfd, std::string(id) + std::string(common::k_record_suffix),
                                common::k_max_record_bytes);
  if (!text) {
    return std::nullopt;
  }
  auto summary = common::read_record_summary(*text);
  if (!summary || summary->uid.kind != common::JsonKind::unsigned_integer ||
      summary->uid.unsigned_integer > static_cast<uid_t>(-1)) {
    return std::nullopt;
  }
  return static_cast<uid_t>(summary->uid.unsigned_integer);
}

bool newer_than(int dirfd, std::string_view name, time_t cutoff) {
  struct stat st {};
  return ::fstatat(dirfd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         st.st_mtime >= cutoff;
}

// Adds to `ids` the ids of the cores and live reservations of one executable directory newer
// than `cutoff` that count for `owner` (every one without an owner).
void count_recent(int dirfd, time_t cutoff, std::optional<uid_t> owner,
                  std::set<std::string, std::less<>>& ids) {
  std::set<std::string, std::less<>> cores;
  std::set<std::string, std::less<>> reserved;
  (void)common::list_dir(
      dirfd,
      [&](std::string_view name) {
        if (name.ends_with(common::k_core_suffix) && !name.starts_with('.')) {
          cores.emplace(name.substr(0, name.size() - common::k_core_suffix.size()));
        } else if (name.starts_with(".#") && name.ends_with(k_reservation_suffix)) {
          reserved.emplace(name.substr(2, name.size() - 2 - k_reservation_suffix.size()));
        }
      },
      common::Hidden::include); // the reservations are ".#<id>.reserved"
  // A reservation outlives its core's commit until the record is written: while it lives it
  // says whose the core is, and then the record does.
  std::map<std::string, std::optional<uid_t>, std::less<>> live;
  for (const auto& id : reserved) {
    const std::string name = reservation_name(id);
    if (newer_than(dirfd, name, cutoff) && reservation_alive(dirfd, name)) {
      live.emplace(id, reservation_owner(dirfd, name));
    }
  }
  for (const auto& [id, who] : live) {
    if (!owner || who == owner) {
      ids.emplace(id);
    }
  }
  for (const auto& id : cores) {
    if (ids.contains(id) || !newer_than(dirfd, id + std::string(common::k_core_suffix), cutoff)) {
      continue;
    }
    if (!owner) {
      ids.emplace(id);
    } else if (auto it = live.find(id);
               it != live.end() ? it->second == owner : record_owner(dirfd, id) == owner) {
      ids.emplace(id);
    }
  }
}

} // namespace

common::Expected<common::UniqueFd> reserve_core(int exe_dir, const std::string& id,
                                                std::optional<uid_t> owner) {
  const std::string name = reservation_name(id);
  const int fd = ::openat(exe_dir, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                          common::k_file_mode);
  if (fd < 0) {
    return common::fail_errno("Failed to create " + common::quoted(name), errno);
  }
  common::UniqueFd file(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::unlinkat(exe_dir, name.c_str(), 0);
    return common::fail_errno("Failed to lock " + common::quoted(name), err);
  }
  if (owner) {
    const std::string text = std::to_string(*owner);
    if (auto w = common::write_all(fd, std::string_view(text)); !w) {
      ::unlinkat(exe_dir, name.c_str(), 0);
      return std::unexpected(w.error());
    }
  }
  return file;
}

void release_reservation(int exe_dir, const std::string& id, common::UniqueFd fd) {
  // Unlink while still holding the lock: a counter never sees it unlocked and alive.
  ::unlinkat(exe_dir, reservation_name(id).c_str(), 0);
  fd.reset();
}

unsigned recent_cores(const common::Store& store, const std::string& exe,
                      std::optional<uid_t> owner, unsigned interval) {
  if (exe.empty()) {
    return 0; // an empty scope would mean every executable
  }
  const time_t cutoff = ::time(nullptr) - static_cast<time_t>(interval);
  // By id: a capture that has just linked its core and not yet removed its reservation is
  // one core, not two.
  std::set<std::string, std::less<>> ids;
  // <host>/<exe> of every host (not only ours: %h is the crasher's to choose). A directory that
  // cannot be read counts nothing: the limit errs towards keeping a core.
  (void)store.walk({common::Store::Listing::all, {}, exe}, {},
                   [&](std::string_view, std::string_view, int dirfd) {
                     count_recent(dirfd, cutoff, owner, ids);
                   });
  return static_cast<unsigned>(ids.size());
}

// Step 5 of the handler, over the locks above.

namespace {

// The pipe the kernel writes the core into is 64 KiB; a bigger one lets the kernel run ahead of
// us and release the crashed process sooner. 1 MiB is the default pipe-max-size.
constexpr int k_pipe_size = 1 << 20;

// The crashing uid's slot first, then one of all: a user whose dumps stall (a process that
// never finishes dumping) holds at most max_captures_per_user slots for capture_timeout, and the
// others stay free for everyone else. Without %u there is no uid to count: only max_captures.
void take_capture_slots(Context& ctx) {
  const int dir = ctx.runtime_dir.get();
  const unsigned per_user = std::min(ctx.config.max_captures_per_user, ctx.config.max_captures);
  if (ctx.args.uid && *ctx.args.uid >= 0 && *ctx.args.uid <= static_cast<uid_t>(-1)) {
    const auto uid = static_cast<uid_t>(*ctx.args.uid);
    auto mine = try_user_slot(dir, uid, per_user);
    if (!mine) {
      ctx.warnings.push_back(mine.error().message + ": no per-user admission control");
    } else if (!*mine) {
      ctx.lean = true;
      ctx.lean_reason = std::to_string(per_user) + " captures of uid " + std::to_string(uid) +
                        " already running (max_captures_per_user)";
      return;
    } else {
      ctx.user_slot = std::move(*mine);
    }
  }
  auto slot = try_capture_slot(dir, ctx.config.max_captures);
  if (!slot) {
    ctx.warnings.push_back(slot.error().message + ": no admission control, capturing anyway");
  } else if (!*slot) {
    ctx.lean = true;
    ctx.lean_reason =
        std::to_string(ctx.config.max_captures) + " captures already running (max_captures)";
    ctx.user_slot.reset();
  } else {
    ctx.slot = std::move(*slot);
  }
}

} // namespace

// 5. Admission, as root: a capture slot, or the lean path. A storm of crashes must cost a
// bounded amount of memory and CPU, and the kernel must never skip a dump because handlers are
// busy (core_pipe_limit = 0): past max_captures, a handler records the crash without its core.
void admit_capture(Context& ctx) {
  auto dir = open_runtime_dir(ctx.config.runtime_dir);
  if (!dir) {
    // Fail open: a core for every crash as before, rather than no core at all.
    ctx.warnings.push_back(dir.error().message + ": no admission control, capturing anyway");
  } else {
    ctx.runtime_dir = std::move(*dir);
    take_capture_slots(ctx);
    if (!ctx.lean && ctx.config.rate_limit_burst > 0) {
      auto lock = open_rate_lock(ctx.runtime_dir.get(), ctx.record.store_exe);
      if (lock) {
        ctx.rate_lock = std::move(*lock);
      } else {
        ctx.warnings.push_back(lock.error().message + ": rate limit without a lock");
      }
    }
  }
  if (ctx.lean) {
    // Close the pipe at once: the kernel's next write fails and it stops dumping, the crashed
    // process is released, and nothing of the core is read or compressed. A Python process is
    // held a moment longer: step 7 reads its Python stacks first, within the walk's budget.
    if (!ctx.config.python_stacks || python_modules(ctx.crashed.maps()).empty()) {
      ctx.input.reset();
    }
    return;
  }
  // Only now enlarge the pipe: while it is full the kernel is blocked writing the core, which
  // keeps the process and its /proc entries alive for the reads in identify_crash even when
  // core_pipe_limit is 0. From here on, draining fast matters more.
  if (ctx.input) {
    // Best effort: fails harmlessly when stdin is not a pipe.
    ::fcntl(ctx.input.get(), F_SETPIPE_SZ, k_pipe_size);
  }
}

} // namespace handler
