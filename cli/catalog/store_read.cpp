// One <host>/<exe> directory of the store read for the catalog, and the places of a user's view
// (load.hpp).
#include "cli/catalog/load.hpp"
#include "common/base/escape.hpp"
#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "common/store/names.hpp"
#include "common/store/user_view.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

namespace cli {

namespace {

constexpr int k_dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

// A record that cannot be parsed (or read whole) is still a crash: listed from its place in
// the store (host and executable directories, id, file time), so nothing hides a crash from
// `corectl list` by making its record unreadable.
Crash by_place(int efd, const std::string& exe, const std::string& host, const std::string& id) {
  Crash c;
  c.id = id;
  c.hostname = host;
  c.executable = "/" + common::decode_exe(exe);
  c.signal_name = "unknown";
  c.site = "(unreadable record)";
  struct stat st {};
  const std::string name = id + std::string(common::k_record_suffix);
  if (::fstatat(efd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    c.time = static_cast<int64_t>(st.st_mtime);
  }
  return c;
}

// Appends the records of a cached (or freshly read) directory that pass the filter.
void take(const CachedDir& d, const std::string& host, const std::string& exe, const Filter& filter,
          Parse parse, WorkerResult& out) {
  for (const auto& id : d.ids) {
    add_id(out.ids, id);
  }
  if (parse == Parse::no) {
    return;
  }
  if (d.malformed > 0) {
    out.problems.malformed += d.malformed;
    if (out.problems.first.empty()) {
      out.problems.first = "Malformed record(s) in " + common::quoted(host + "/" + exe);
    }
  }
  for (const auto& c : d.crashes) {
    if (filter.matches(c)) {
      out.crashes.push_back(c);
      out.crashes.back().host_dir = host;
      out.crashes.back().exe_dir = exe;
    }
  }
}

} // namespace

void first_problem(LoadProblems& p, const std::string& message) {
  if (p.first.empty()) {
    p.first = message;
  }
}

void note(LoadProblems& p, int err, const std::string& what) {
  if (err == EACCES || err == EPERM) {
    ++p.denied;
  } else if (err == ELOOP || err == ENOTDIR || err == EINVAL) {
    // A symbolic link, a file where a directory belongs, a FIFO or device where a record
    // belongs: put there by the store's owner, not an I/O failure. Skipped and reported, so it
    // cannot hide the rest of the store or stop retention.
    ++p.malformed;
  } else {
    ++p.unreadable;
  }
  if (p.first.empty()) {
    p.first = common::Error::from_errno(what, err).message;
  }
}

void load_exe_dir(int store_fd, const std::string& host, const std::string& exe,
                  const Filter& filter, Parse parse, const Known& known, WorkerResult& out) {
  const std::string rel = host + "/" + exe;
  const int hfd = ::openat(store_fd, host.c_str(), k_dir_flags);
  if (hfd < 0) {
    note(out.problems, errno, "Failed to open " + common::quoted(host));
    return;
  }
  common::UniqueFd host_fd(hfd);
  // Opened (which needs read permission) even when the cache answers: see cache.hpp.
  const int efd = ::openat(hfd, exe.c_str(), k_dir_flags);
  if (efd < 0) {
    note(out.problems, errno, "Failed to open " + common::quoted(rel));
    return;
  }
  common::UniqueFd exe_fd(efd);
  ++out.problems.readable_dirs;
  struct stat st {};
  if (::fstat(efd, &st) != 0) {
    note(out.problems, errno, "Failed to stat " + common::quoted(rel));
    return;
  }
  const DirStamp stamp{static_cast<uint64_t>(st.st_ino), st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  if (known.cache) {
    if (auto it = known.cache->find({host, exe});
        it != known.cache->end() && it->second.stamp == stamp) {
      take(it->second, host, exe, filter, parse, out);
      return;
    }
  }
  // Every name counts, hidden ones too (common::index::dir_state): a rename over a record keeps
  // the count but not the mtime, an unlink and a create within one mtime tick keep the mtime
  // but not (always) the count.
  std::vector<std::string> names;
  if (auto listed = common::list_dir(
          efd, [&](std::string_view n) { names.emplace_back(n); }, common::Hidden::include);
      !listed) {
    note(out.problems, listed.error().sys_errno, "Failed to list " + common::quoted(rel));
    return;
  }
  if (known.indexed) {
    const common::index::DirState now{stamp.ino, stamp.mtime_sec * 1'000'000'000 + stamp.mtime_nsec,
                                      names.size()};
    if (auto it = known.indexed->find({host, exe});
        it != known.indexed->end() && it->second.state == now) {
      out.unchanged.emplace_back(common::index::DirKey{host, exe}, parse);
      return;
    }
  }
  std::sort(names.begin(), names.end());
  const std::string core_suffix(common::k_core_suffix);
  CachedDir d;
  d.stamp = stamp;
  d.entries = names.size();
  std::vector<std::string> bad_ids;
  bool complete = true;
  for (const auto& name : names) {
    if (!name.ends_with(common::k_record_suffix)) {
      continue;
    }
    const std::string id = name.substr(0, name.size() - common::k_record_suffix.size());
    if (!common::is_record_id(id)) {
      continue;
    }
    if (parse == Parse::no) {
      d.ids.push_back(id);
      continue;
    }
    auto text = common::read_file(efd, name, common::k_max_record_bytes);
    const std::string what = common::quoted(rel + "/" + name);
    if (!text) {
      const int err = text.error().sys_errno;
      if (err == ELOOP || err == EINVAL) { // not a regular file: skipped like a bad record
        bad_ids.push_back(id);
        ++d.malformed;
        first_problem(out.problems, text.error().message);
        continue;
      }
      if (err != 0) {
        bad_ids.push_back(id);
        note(out.problems, err, "Failed to read " + what);
        complete = false;
        continue;
      }
      // Too large to read: listed by its place in the store below.
    }
    common::Expected<Crash> crash = text ? summarise(*text) : std::unexpected(text.error());
    if (!crash || crash->id != id) {
      ++d.malformed;
      first_problem(out.problems,
                    "Malformed record " + what + ": " +
                        (!crash ? crash.error().message : "its id does not match its file name"));
      // Still a crash: listed (and counted) by its place, host and executable directory and id.
      crash = by_place(efd, exe, host, id);
    }
    crash->core_file = std::binary_search(names.begin(), names.end(), id + core_suffix);
    d.ids.push_back(id);
    d.crashes.push_back(std::move(*crash));
  }
  // Crash ids first, then the ids of records that did not parse (the cache's layout).
  d.ids.insert(d.ids.end(), bad_ids.begin(), bad_ids.end());
  take(d, host, exe, filter, parse, out);
  // Not cached: partial reads, id-only listings, and directories changed in the last 2 s.
  const auto now = static_cast<int64_t>(std::time(nullptr));
  if (parse == Parse::yes && complete && st.st_mtim.tv_sec < now - 2) {
    out.fresh.emplace_back(std::pair{host, exe}, std::move(d));
  }
}

// True when the store root can be listed; a user who may only traverse it (o+x) reaches their
// own crashes through their view instead (common/store/user_view).
bool root_listable(const common::Store& store) {
  const int fd = ::openat(store.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  ::close(fd);
  return true;
}

// The crashes of the calling user's view, each read from its place in the store (a view names
// places, never content). Links whose record is gone (retention removed it) are skipped.
std::vector<Located> view_places(const common::Store& store, LoadProblems& problems) {
  size_t malformed = 0;
  auto entries = common::read_user_view(store.fd(), ::getuid(), malformed);
  if (!entries) {
    // No view (ENOENT: the user never had a crash they may read) is no permission either.
    const int err = entries.error().sys_errno == ENOENT ? EACCES : entries.error().sys_errno;
    note(problems, err, "Failed to open store " + common::quoted(store.root()));
    return {};
  }
  ++problems.readable_dirs;
  problems.malformed += malformed;
  std::vector<Located> out;
  for (auto& e : *entries) {
    out.push_back({std::move(e.host), std::move(e.exe), std::move(e.id)});
  }
  return out;
}

} // namespace cli
