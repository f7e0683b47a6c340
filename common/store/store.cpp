#include "common/store/store.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/store/names.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <vector>

namespace common {

namespace {

constexpr int k_dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

} // namespace

std::string new_record_id() {
  return random_hex(8);
}

bool is_record_id(std::string_view id) {
  if (id.size() != 16) {
    return false;
  }
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

Expected<Store> Store::open(const std::string& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && errno == EACCES) {
    // A user may only pass through the root (o+x) to their own crashes (user_view.hpp): paths
    // below it open through an O_PATH descriptor, only listing it fails.
    fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      errno = EACCES;
    }
  }
  if (fd < 0) {
    return fail_errno("Failed to open store " + quoted(root), errno);
  }
  return Store(root, UniqueFd(fd));
}

Expected<UniqueFd> Store::open_exe_dir(const std::string& host, const std::string& exe) const {
  if (!is_safe_component(host) || !is_safe_component(exe)) {
    return fail("refusing unsafe store path " + quoted(host + "/" + exe));
  }
  auto host_fd = open_or_make_dir(m_fd.get(), host, k_dir_mode);
  if (!host_fd) {
    return std::unexpected(host_fd.error());
  }
  return open_or_make_dir(host_fd->get(), exe, k_dir_mode);
}

Expected<size_t> Store::walk(const WalkScope& scope, const WalkEvents& events,
                             const ExeDirFn& fn) const {
  size_t failures = 0;
  auto failed = [&](const std::string& rel, const Error& error) {
    ++failures;
    if (events.failed) {
      events.failed(rel, error);
    }
  };
  auto foreign = [&](const std::string& rel, int err) {
    if (events.foreign) {
      events.foreign(rel, err);
    }
  };
  auto wanted = [&](std::string_view name) {
    // A scope's names come from callers: even Listing::all never leaves its directory.
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) {
      return false;
    }
    return scope.listing == Listing::all || is_safe_component(name);
  };
  // One component at a time with O_NOFOLLOW: a link planted in the store (which its owner, not
  // root, controls) must not lead a reader, or root's vacuum, outside it.
  auto open_child = [&](int parent, const std::string& rel, const std::string& name) {
    const int fd = ::openat(parent, name.c_str(), k_dir_flags);
    if (fd < 0) {
      int err = errno;
      struct stat st {};
      if (err == ENOTDIR && ::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode)) {
        err = ELOOP; // O_DIRECTORY answers ENOTDIR for a link: tell it apart from a file
      }
      if (err == ELOOP || err == ENOTDIR) {
        foreign(rel, err);
      } else if (err != ENOENT) {
        failed(rel, Error::from_errno("Failed to open " + quoted(rel), err));
      }
    }
    return UniqueFd(fd);
  };
  // Names are collected before anything below is opened: one directory stream open at a time.
  auto names_of = [&](int dirfd, const std::string& rel) {
    std::vector<std::string> names;
    if (auto listed = list_dir(dirfd, [&](std::string_view n) { names.emplace_back(n); });
        !listed) {
      failed(rel, Error::from_errno("Failed to list " + quoted(rel), listed.error().sys_errno));
    }
    return names;
  };
  auto walk_host = [&](const std::string& host) {
    const UniqueFd host_fd = open_child(m_fd.get(), host, host);
    if (!host_fd) {
      return;
    }
    std::vector<std::string> exes;
    if (scope.exe.empty()) {
      if (events.host_opened) {
        events.host_opened(host);
      }
      exes = names_of(host_fd.get(), host);
    } else {
      exes.push_back(scope.exe);
    }
    for (const auto& exe : exes) {
      const std::string rel = host + "/" + exe;
      if (!wanted(exe)) {
        foreign(rel, 0);
        continue;
      }
      const UniqueFd exe_fd = open_child(host_fd.get(), rel, exe);
      if (exe_fd) {
        fn(host, exe, exe_fd.get());
      }
    }
  };

  if (!scope.host.empty()) {
    if (wanted(scope.host)) {
      walk_host(scope.host);
    } else {
      foreign(scope.host, 0);
    }
    return failures;
  }
  std::vector<std::string> hosts;
  if (auto listed = list_dir(m_fd.get(), [&](std::string_view n) { hosts.emplace_back(n); });
      !listed) {
    return fail_errno("Failed to list store " + quoted(m_root), listed.error().sys_errno);
  }
  for (const auto& host : hosts) {
    if (wanted(host)) {
      walk_host(host);
    } else {
      foreign(host, 0);
    }
  }
  return failures;
}

Expected<size_t> Store::for_each_record(const std::function<void(const StoreEntry&)>& fn,
                                        const WalkEvents& events) const {
  size_t unlisted = 0;
  auto walked = walk({}, events, [&](std::string_view host, std::string_view exe, int dirfd) {
    std::vector<std::string> ids;
    std::vector<std::string> cores;
    auto listed = list_dir(dirfd, [&](std::string_view name) {
      if (name.ends_with(k_core_suffix)) {
        cores.emplace_back(name.substr(0, name.size() - k_core_suffix.size()));
      } else if (name.ends_with(k_record_suffix)) {
        ids.emplace_back(name.substr(0, name.size() - k_record_suffix.size()));
      }
    });
    if (!listed) {
      ++unlisted;
      if (events.failed) {
        const std::string rel = std::string(host) + "/" + std::string(exe);
        events.failed(rel,
                      Error::from_errno("Failed to list " + quoted(rel), listed.error().sys_errno));
      }
    }
    std::sort(cores.begin(), cores.end());
    for (const auto& id : ids) {
      const StoreEntry e{std::string(host), std::string(exe), id, dirfd,
                         std::binary_search(cores.begin(), cores.end(), id)};
      fn(e);
    }
  });
  if (!walked) {
    return walked;
  }
  return *walked + unlisted;
}

uint64_t Store::disk_usage() const {
  uint64_t total = 0;
  // An estimate for the quota: what cannot be listed is not counted (the next walk retries).
  (void)walk({Listing::all, {}, {}}, {}, [&](std::string_view, std::string_view, int dirfd) {
    (void)list_dir(dirfd, [&](std::string_view name) {
      struct stat st {};
      if (::fstatat(dirfd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        total += static_cast<uint64_t>(st.st_blocks) * 512;
      }
    });
  });
  return total;
}

namespace {

// The usage file: "<bytes> <epoch seconds of the last full walk>\n", locked while updated.
// Missing, malformed or foreign (not a regular file) means "walk now".
struct UsageFile {
  UniqueFd fd;
  uint64_t bytes = 0;
  int64_t walked = 0;
  bool valid = false;
  bool locked = false; // we hold the lock and may write
};

// How long a crash waits for the usage lock another capture holds for a moment.
constexpr int k_usage_lock_tries = 50; // × 1 ms

UsageFile open_usage(int store_fd) {
  UsageFile u;
  const int fd = ::openat(store_fd, k_usage_name,
                          O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, k_file_mode);
  if (fd < 0) {
    return u;
  }
  u.fd.reset(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    u.fd.reset();
    return u;
  }
  // Never a blocking lock: anyone who can open the file (the store user, the exporter) could
  // hold it for ever and stall every crash. Other handlers hold it for a read and a write; past
  // a few milliseconds, go on unlocked (read what is there, write nothing).
  for (int i = 0; i < k_usage_lock_tries; ++i) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      u.locked = true;
      break;
    }
    if (errno != EWOULDBLOCK && errno != EINTR) {
      break;
    }
    ::usleep(1000);
  }
  char buf[64] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  if (n > 0) {
    if (const auto v = parse_usage(std::string_view(buf, static_cast<size_t>(n)))) {
      u.bytes = v->bytes;
      u.walked = v->walked;
      u.valid = true;
    }
  }
  return u;
}

void store_usage(const UsageFile& u, uint64_t bytes, int64_t walked) {
  if (!u.locked) {
    return; // the next locked update or walk corrects the estimate
  }
  char buf[64];
  const int n =
      std::snprintf(buf, sizeof buf, "%llu %lld\n", static_cast<unsigned long long>(bytes),
                    static_cast<long long>(walked));
  if (n > 0 && ::ftruncate(u.fd.get(), 0) == 0) {
    (void)!::pwrite(u.fd.get(), buf, static_cast<size_t>(n), 0);
  }
}

} // namespace

std::optional<UsageValue> parse_usage(std::string_view text) {
  if (text.ends_with('\n')) {
    text.remove_suffix(1);
  }
  const size_t sp = text.find(' ');
  if (sp == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view a = text.substr(0, sp);
  const std::string_view b = text.substr(sp + 1);
  // from_chars takes a '-' for signed types: only digits are ours.
  auto digits = [](std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  const auto bytes = digits(a) ? parse_number<uint64_t>(a) : std::nullopt;
  const auto walked = digits(b) ? parse_number<int64_t>(b) : std::nullopt;
  if (!bytes || !walked) {
    return std::nullopt;
  }
  return UsageValue{*bytes, *walked};
}

uint64_t Store::usage_estimate(unsigned max_age) const {
  UsageFile u = open_usage(m_fd.get());
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  if (u.valid && now - u.walked < static_cast<int64_t>(max_age) && now >= u.walked) {
    return u.bytes;
  }
  // Others see the lock meanwhile, and walk too rather than wait: each walk is bounded by the
  // store, a wait on a lock is not.
  const uint64_t bytes = disk_usage();
  if (u.fd) {
    store_usage(u, bytes, now);
  }
  return bytes;
}

void Store::add_usage(uint64_t bytes) const {
  UsageFile u = open_usage(m_fd.get());
  if (u.fd && u.valid) {
    store_usage(u, u.bytes + bytes, u.walked);
  }
}

std::string report_relpath(const std::string& host, const std::string& exe, const std::string& id) {
  return host + "/" + exe + "/" + id + std::string(k_report_suffix);
}

std::string core_relpath(const std::string& host, const std::string& exe, const std::string& id) {
  return host + "/" + exe + "/" + id + std::string(k_core_suffix);
}

std::string record_relpath(const std::string& host, const std::string& exe, const std::string& id) {
  return host + "/" + exe + "/" + id + std::string(k_record_suffix);
}

Expected<FsSpace> fs_space(int fd) {
  struct statvfs sv {};
  if (::fstatvfs(fd, &sv) != 0) {
    return fail_errno("Failed to query free space", errno);
  }
  // f_bavail, not f_bfree: the root reserve is not ours once privileges are dropped.
  return FsSpace{static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize,
                 static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize};
}

} // namespace common
