#include "cli/catalog/cache.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/path.hpp"
#include "common/base/sha256.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <optional>
#include <vector>

namespace cli {

namespace {

constexpr std::string_view k_magic = "corectl-summary-cache 2";
constexpr size_t k_cache_limit = 1ULL << 30;

void put(std::string& out, std::string_view s) {
  for (char ch : s) {
    switch (ch) {
    case '\\':
      out += "\\\\";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\n':
      out += "\\n";
      break;
    default:
      out += ch;
    }
  }
  out += '\t';
}

void put(std::string& out, int64_t v) {
  out += std::to_string(v);
  out += '\t';
}

std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char n = s[++i];
      out += n == 't' ? '\t' : n == 'n' ? '\n' : n;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Splits one line on tabs.
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == '\t') {
      out.push_back(line.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

template <typename T>
bool num(std::string_view s, T& v) {
  const auto n = common::parse_number<T>(s);
  if (n) {
    v = *n;
  }
  return n.has_value();
}

constexpr const char* k_cache_dir = "process-core";

// Opens the absolute directory `path` one component at a time from "/", each with O_NOFOLLOW
// relative to the one before: corectl often runs as root with a user's environment, and a link
// anywhere on the way (not only at the end) would take root's reads and writes elsewhere.
std::optional<common::UniqueFd> open_dir_nofollow(const std::string& path) {
  auto dir = common::open_at(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY);
  if (!dir || path.empty() || path[0] != '/') {
    return std::nullopt;
  }
  for (std::string_view part : common::path_components(path)) {
    const std::string name(part);
    if (name == ".") {
      continue;
    }
    if (name == "..") {
      return std::nullopt;
    }
    // Plain openat per component: open_at() would add openat2's checks, which one component
    // with O_NOFOLLOW already makes.
    const int fd =
        ::openat(dir->get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      return std::nullopt;
    }
    dir = common::UniqueFd(fd);
  }
  return std::move(*dir);
}

bool owned_by_us(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid();
}

// The directory of a path cache_path_for() made, opened without following links and only when
// it is still ours (the path is rechecked on each use, not trusted from the first).
std::optional<common::UniqueFd> open_cache_dir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (path.empty() || slash == std::string::npos || slash == 0) {
    return std::nullopt;
  }
  auto dir = open_dir_nofollow(path.substr(0, slash));
  if (!dir || !owned_by_us(dir->get())) {
    return std::nullopt;
  }
  return dir;
}

} // namespace

std::string cache_path_for(const std::string& store_root) {
  if (const char* off = std::getenv("CORECTL_CACHE");
      off != nullptr && std::string_view(off) == "0") {
    return {};
  }
  std::string base;
  std::vector<std::string> below; // created if missing, owned by us
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && x[0] == '/') {
    base = x;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    base = home;
    below.emplace_back(".cache");
  } else {
    return {};
  }
  below.emplace_back(k_cache_dir);
  // The base must be ours: `sudo -E corectl` runs as root with the caller's HOME, where root
  // must neither leave files nor read a cache that user wrote.
  auto dir = open_dir_nofollow(base);
  if (!dir && errno == ENOENT) {
    // A missing $XDG_CACHE_HOME is made, but only in a directory of ours.
    while (base.size() > 1 && base.back() == '/') {
      base.pop_back();
    }
    auto parent = open_dir_nofollow(std::string(common::dir_name(base)));
    if (parent && owned_by_us(parent->get())) {
      if (auto made = common::open_or_make_dir(parent->get(), std::string(common::base_name(base)),
                                               0700, common::FollowLinks::no)) {
        dir = std::move(*made);
      }
    }
  }
  if (!dir || !owned_by_us(dir->get())) {
    return {};
  }
  std::string path = base;
  for (const auto& name : below) {
    auto next = common::open_or_make_dir(dir->get(), name, 0700, common::FollowLinks::no);
    if (!next || !owned_by_us(next->get())) {
      return {};
    }
    dir = std::move(*next);
    path += "/" + name;
  }
  char real[PATH_MAX];
  const std::string key = ::realpath(store_root.c_str(), real) != nullptr ? real : store_root;
  return path + "/corectl-" + common::sha256_hex(key, 16);
}

SummaryCache read_cache(const std::string& path, const std::string& store_root) {
  auto dir = open_cache_dir(path);
  if (!dir) {
    return {};
  }
  auto text = common::read_file(dir->get(), std::string(common::base_name(path)), k_cache_limit);
  if (!text) {
    return {};
  }
  return parse_cache(*text, store_root);
}

SummaryCache parse_cache(std::string_view text, const std::string& store_root) {
  SummaryCache cache;
  std::string_view rest = text;
  auto next_line = [&]() {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    return line;
  };
  const auto head = fields(next_line());
  if (head.size() != 2 || head[0] != k_magic || unescape(head[1]) != store_root) {
    return cache;
  }
  CachedDir* dir = nullptr;
  while (!rest.empty()) {
    const auto f = fields(next_line());
    if (f.size() == 8 && f[0] == "D") {
      CachedDir d;
      if (!num(f[3], d.stamp.ino) || !num(f[4], d.stamp.mtime_sec) ||
          !num(f[5], d.stamp.mtime_nsec) || !num(f[6], d.malformed)) {
        return {};
      }
      dir = &cache[{unescape(f[1]), unescape(f[2])}];
      *dir = std::move(d);
    } else if (f.size() == 19 && f[0] == "R" && dir != nullptr) {
      Crash c;
      int deleted = 0, present = 0, removed = 0, core_file = 0;
      c.id = unescape(f[1]);
      c.hostname = unescape(f[3]);
      c.executable = unescape(f[4]);
      c.signal_name = unescape(f[7]);
      c.signature = unescape(f[14]);
      c.site = unescape(f[15]);
      c.comm = unescape(f[17]);
      int64_t uid = 0;
      if (!f[16].empty() && !num(f[16], uid)) {
        return {};
      }
      if (!f[16].empty()) {
        c.uid = uid;
      }
      const auto reason = common::parse_core_reason(f[9]);
      int64_t pid = 0;
      if (!num(f[2], c.time) || !num(f[5], deleted) || !num(f[6], c.signal) || !reason ||
          !num(f[10], present) || !num(f[11], c.core_size) || !num(f[12], removed) ||
          !num(f[13], core_file) || (!f[8].empty() && !num(f[8], pid))) {
        return {};
      }
      if (!f[8].empty()) {
        c.pid = pid;
      }
      c.core_reason = *reason;
      c.executable_deleted = deleted != 0;
      c.core_present = present != 0;
      c.core_removed = removed != 0;
      c.core_file = core_file != 0;
      dir->ids.push_back(c.id);
      dir->crashes.push_back(std::move(c));
    } else if (f.size() == 2 && f[0] == "I" && dir != nullptr) {
      dir->ids.emplace_back(f[1]); // an id whose record did not parse
    } else if (!(f.size() == 1 && f[0].empty())) {
      return {};
    }
  }
  return cache;
}

void write_cache(const std::string& path, const std::string& store_root, const SummaryCache& c) {
  if (path.empty()) {
    return;
  }
  std::string out;
  put(out, k_magic);
  out.pop_back();
  out += '\t';
  put(out, store_root);
  out.back() = '\n';
  for (const auto& [key, d] : c) {
    out += "D\t";
    put(out, key.first);
    put(out, key.second);
    put(out, static_cast<int64_t>(d.stamp.ino));
    put(out, d.stamp.mtime_sec);
    put(out, d.stamp.mtime_nsec);
    put(out, static_cast<int64_t>(d.malformed));
    out += "\n";
    for (const auto& r : d.crashes) {
      out += "R\t";
      put(out, r.id);
      put(out, r.time);
      put(out, r.hostname);
      put(out, r.executable);
      put(out, r.executable_deleted ? 1 : 0);
      put(out, r.signal);
      put(out, r.signal_name);
      if (r.pid) {
        put(out, *r.pid);
      } else {
        out += '\t';
      }
      put(out, common::to_string(r.core_reason));
      put(out, r.core_present ? 1 : 0);
      put(out, static_cast<int64_t>(r.core_size));
      put(out, r.core_removed ? 1 : 0);
      put(out, r.core_file ? 1 : 0);
      put(out, r.signature);
      put(out, r.site);
      if (r.uid) {
        put(out, *r.uid);
      } else {
        out += '\t';
      }
      put(out, r.comm);
      out += "\n";
    }
    for (size_t i = d.crashes.size(); i < d.ids.size(); ++i) {
      out += "I\t" + d.ids[i] + "\n";
    }
  }
  auto dir = open_cache_dir(path);
  if (dir) {
    (void)common::write_file_atomic(dir->get(), std::string(common::base_name(path)), out, 0600,
                                    common::Replace::yes);
  }
}

} // namespace cli
