#include "cli/debuginfo/debug_root.hpp"

#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/crash/symbolize.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <vector>

namespace cli {

namespace {

constexpr int k_fatal_signals[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT};
constexpr int k_max_depth = 32; // path components of a copied file; deeper ones are left out

// The directory a fatal signal removes: descriptors and a fixed-size name, so that the handler
// makes only async-signal-safe calls and nothing from the record reaches what it unlinks.
volatile sig_atomic_t g_parent = -1;
char g_name[32]; // "corectl-XXXXXX"

// struct linux_dirent64 (getdents64(2)): d_ino, d_off, then these, then the name.
constexpr size_t k_reclen_at = 16;
constexpr size_t k_name_at = 19;

// Removes `name` in `dirfd` and, when it is a directory, everything in it. Links are removed,
// never followed (unlinkat, and directories opened O_NOFOLLOW): the debugger's user owns the
// directory and may have put anything there. System calls only: a signal handler calls it.
void remove_tree(int dirfd, const char* name, int depth) {
  if (::unlinkat(dirfd, name, 0) == 0 || (errno != EISDIR && errno != EPERM) ||
      depth > k_max_depth + 2) {
    return;
  }
  const int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  alignas(8) char buf[2048];
  for (;;) {
    // Read from the start after each batch of removals: entries move while they go.
    if (::lseek(fd, 0, SEEK_SET) != 0) {
      break;
    }
    const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    bool removed = false;
    for (long off = 0; off < n;) {
      unsigned short reclen = 0;
      std::memcpy(&reclen, buf + off + k_reclen_at, sizeof reclen);
      const char* entry = buf + off + k_name_at;
      off += reclen;
      if (reclen == 0) {
        break;
      }
      if (std::strcmp(entry, ".") != 0 && std::strcmp(entry, "..") != 0) {
        remove_tree(fd, entry, depth + 1);
        removed = true;
      }
    }
    if (!removed) {
      break;
    }
  }
  ::close(fd);
  ::unlinkat(dirfd, name, AT_REMOVEDIR);
}

extern "C" void on_fatal_signal(int signo) {
  if (g_parent >= 0 && g_name[0] != '\0') {
    remove_tree(g_parent, g_name, 0);
  }
  ::signal(signo, SIG_DFL);
  ::raise(signo);
}

// The components of an absolute path from a record, or nullopt when one is empty, "." or "..",
// too long for a file name, or too many: such a path is not copied at all.
std::optional<std::vector<std::string>> components(const std::string& path) {
  // An empty component ("a//b", a trailing "/") is refused like "." and "..": none is a path the
  // kernel writes into NT_FILE.
  if (!path.starts_with('/') || path.ends_with('/') || path.find("//") != std::string::npos) {
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (std::string_view c : common::path_components(path)) {
    if (c == "." || c == ".." || c.size() > NAME_MAX ||
        out.size() >= static_cast<size_t>(k_max_depth)) {
      return std::nullopt;
    }
    out.emplace_back(c);
  }
  return out;
}

common::Expected<void> copy_fd(int src, int dst, const std::string& what) {
  std::array<std::byte, 1 << 16> buf{};
  for (;;) {
    auto n = common::read_some(src, buf);
    if (!n) {
      return common::fail_errno("Failed to read " + what, n.error().sys_errno);
    }
    if (*n == 0) {
      return {};
    }
    if (auto w = common::write_all(dst, std::span(buf).first(*n)); !w) {
      return std::unexpected(w.error());
    }
  }
}

} // namespace

DebugDir::DebugDir(common::UniqueFd parent, common::UniqueFd dir, std::string path,
                   std::string name)
    : m_parent(std::move(parent)), m_dir(std::move(dir)), m_path(std::move(path)),
      m_name(std::move(name)) {}

DebugDir::DebugDir(DebugDir&& other) noexcept
    : m_parent(std::move(other.m_parent)), m_dir(std::move(other.m_dir)),
      m_path(std::move(other.m_path)), m_name(std::move(other.m_name)) {
  if (m_parent) {
    g_parent = m_parent.get();
  }
}

DebugDir::~DebugDir() {
  if (!m_parent) {
    return;
  }
  for (int sig : k_fatal_signals) {
    ::signal(sig, SIG_DFL);
  }
  g_parent = -1;
  g_name[0] = '\0';
  m_dir.reset();
  remove_tree(m_parent.get(), m_name.c_str(), 0);
}

common::Expected<DebugDir> DebugDir::create(const std::string& base,
                                            std::optional<DebugUser> owner) {
  auto parent = common::open_at(AT_FDCWD, base, O_RDONLY | O_DIRECTORY);
  if (!parent) {
    return std::unexpected(parent.error());
  }
  std::string path = base + "/corectl-XXXXXX";
  if (::mkdtemp(path.data()) == nullptr) {
    return common::fail_errno("Failed to create a temporary directory " + common::quoted(path),
                              errno);
  }
  std::string name = path.substr(base.size() + 1);
  std::snprintf(g_name, sizeof g_name, "%s", name.c_str());
  g_parent = parent->get();
  for (int sig : k_fatal_signals) {
    ::signal(sig, on_fatal_signal);
  }
  auto dir = common::open_at(parent->get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  DebugDir made(std::move(*parent), dir ? std::move(*dir) : common::UniqueFd(), path, name);
  if (!dir) {
    return std::unexpected(dir.error());
  }
  if (owner && ::fchown(made.fd(), owner->uid, owner->gid) != 0) {
    return common::fail_errno(
        "Failed to hand " + common::quoted(path) + " to uid " + std::to_string(owner->uid), errno);
  }
  auto sysroot = common::open_or_make_dir(made.fd(), std::string(k_sysroot), 0700);
  if (!sysroot) {
    return std::unexpected(sysroot.error());
  }
  if (owner && ::fchown(sysroot->get(), owner->uid, owner->gid) != 0) {
    return common::fail_errno("Failed to hand " + common::quoted(path + "/sysroot") + " to uid " +
                                  std::to_string(owner->uid),
                              errno);
  }
  return made;
}

common::Expected<void> become(const DebugUser& user) {
  if (::setgroups(1, &user.gid) != 0) {
    return common::fail_errno("Failed to set the groups of uid " + std::to_string(user.uid), errno);
  }
  if (::setresgid(user.gid, user.gid, user.gid) != 0) {
    return common::fail_errno("Failed to become gid " + std::to_string(user.gid), errno);
  }
  if (::setresuid(user.uid, user.uid, user.uid) != 0) {
    return common::fail_errno("Failed to become uid " + std::to_string(user.uid), errno);
  }
  return {};
}

common::Expected<std::string> add_to_sysroot(const DebugDir& dir, const std::string& path, int src,
                                             std::string_view build_id, Verify verify) {
  const auto parts = components(path);
  if (!parts) {
    return std::unexpected(common::Error{"not a plain absolute path", EINVAL});
  }
  auto at = common::open_at(dir.fd(), std::string(k_sysroot), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!at) {
    return std::unexpected(at.error());
  }
  for (size_t i = 0; i + 1 < parts->size(); ++i) {
    auto next = common::open_or_make_dir(at->get(), (*parts)[i], 0700);
    if (!next) {
      return std::unexpected(next.error());
    }
    at = std::move(next);
  }
  const std::string copy = dir.path() + "/" + std::string(k_sysroot) + path;
  const std::string& leaf = parts->back();
  auto out = common::open_at(at->get(), leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
  if (!out) {
    return std::unexpected(out.error());
  }
  if (auto c = copy_fd(src, out->get(), common::quoted(path)); !c) {
    ::unlinkat(at->get(), leaf.c_str(), 0);
    return std::unexpected(c.error());
  }
  if (verify == Verify::build_id) {
    const auto got = common::read_build_id(copy);
    if (!got || *got != build_id) {
      ::unlinkat(at->get(), leaf.c_str(), 0);
      return std::unexpected(common::Error{"it has build-id " + got.value_or("(none)") +
                                               ", the core saw " + std::string(build_id),
                                           0});
    }
  }
  return copy;
}

common::Expected<std::string> copy_module(const DebugDir& dir, const std::string& path,
                                          std::string_view build_id, Verify verify) {
  const common::ModuleFile f = common::open_module_file(path);
  if (!f.fd) {
    return std::unexpected(
        common::Error{f.error != 0 ? std::string(std::strerror(f.error))
                                   : std::string("not a regular file on a local file system"),
                      f.error});
  }
  return add_to_sysroot(dir, path, f.fd.get(), build_id, verify);
}

std::set<std::string> fill_sysroot(const DebugDir& dir, const nlohmann::json& mappings) {
  std::set<std::string> copied;
  if (!mappings.is_array()) {
    return copied;
  }
  uint64_t budget = k_max_sysroot_bytes;
  for (const auto& m : mappings) {
    if (!m.is_object() || !m.contains("path") || !m["path"].is_string() ||
        !m.contains("build_id") || !m["build_id"].is_string()) {
      continue;
    }
    const std::string path = m["path"].get<std::string>();
    const std::string build_id = m["build_id"].get<std::string>();
    if (path.ends_with(" (deleted)") || !common::is_hex(build_id)) {
      continue;
    }
    const common::ModuleFile f = common::open_module_file(path);
    std::expected<std::string, common::Error> made =
        std::unexpected(common::Error{"not a regular file on a local file system", 0});
    if (f.fd && static_cast<uint64_t>(f.st.st_size) > budget) {
      made = std::unexpected(common::Error{"over the size bound of all copies", 0});
    } else if (f.fd) {
      budget -= static_cast<uint64_t>(f.st.st_size);
      made = add_to_sysroot(dir, path, f.fd.get(), build_id, Verify::build_id);
    } else if (f.error != 0) {
      made = std::unexpected(common::Error{std::strerror(f.error), f.error});
    }
    if (made) {
      copied.insert(path);
    } else if (made.error().sys_errno != EEXIST) {
      std::fprintf(stderr, "corectl: warning: not giving the debugger %s: %s\n",
                   common::printable(common::quoted(path)).c_str(),
                   common::printable(made.error().message).c_str());
    }
  }
  return copied;
}

namespace {

// `path` with "." and ".." worked out as text (no file system involved); nullopt when ".." would
// leave "/".
std::optional<std::string> normalise(const std::string& path) {
  std::vector<std::string_view> parts;
  for (std::string_view c : common::path_components(path)) {
    if (c == ".") {
      continue;
    }
    if (c == "..") {
      if (parts.empty()) {
        return std::nullopt;
      }
      parts.pop_back();
    } else {
      parts.push_back(c);
    }
  }
  std::string out;
  for (std::string_view c : parts) {
    out += '/';
    out += c;
  }
  return out.empty() ? "/" : out;
}

std::optional<std::string> read_link(int dirfd, const std::string& name) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlinkat(dirfd, name.c_str(), buf, sizeof buf);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) {
    return std::nullopt;
  }
  return std::string(buf, static_cast<size_t>(n));
}

// Opens <dir>/sysroot/<path>'s directories, making them (0700) as needed.
std::optional<common::UniqueFd> sysroot_dir(const DebugDir& dir, const std::string& path) {
  auto at = common::open_at(dir.fd(), std::string(k_sysroot), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!at) {
    return std::nullopt;
  }
  const auto parts = components(path);
  if (path != "/" && !parts) {
    return std::nullopt;
  }
  for (const auto& c : parts.value_or(std::vector<std::string>())) {
    auto next = common::open_or_make_dir(at->get(), c, 0700);
    if (!next) {
      return std::nullopt;
    }
    at = std::move(*next);
  }
  return std::move(*at);
}

} // namespace

size_t add_aliases(const DebugDir& dir, const std::set<std::string>& copied) {
  // The links of "/" that root made (merged /usr: lib -> usr/lib), relative and inside "/": the
  // same links in the sysroot, so names through them resolve there too.
  std::map<std::string, std::string> top;
  auto root = common::open_at(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY);
  auto sysroot = sysroot_dir(dir, "/");
  if (!root || !sysroot) {
    return 0;
  }
  (void)common::list_dir(root->get(), [&](std::string_view n) {
    const std::string name(n);
    struct stat st {};
    if (::fstatat(root->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISLNK(st.st_mode) || st.st_uid != 0) {
      return;
    }
    const auto target = read_link(root->get(), name);
    if (target && !target->starts_with('/') && normalise("/" + *target) == "/" + *target &&
        ::symlinkat(target->c_str(), (*sysroot).get(), name.c_str()) == 0) {
      top.emplace(name, "/" + *target);
    }
  });
  // The name a path has after the top links above, as the copies are named.
  auto canonical = [&](const std::string& path) -> std::optional<std::string> {
    auto p = normalise(path);
    if (!p) {
      return std::nullopt;
    }
    const size_t slash = p->find('/', 1);
    const auto link = top.find(p->substr(1, slash == std::string::npos ? slash : slash - 1));
    if (link != top.end()) {
      p = link->second + (slash == std::string::npos ? "" : p->substr(slash));
    }
    return p;
  };
  std::set<std::string> dirs;
  for (const auto& path : copied) {
    dirs.insert(path.substr(0, std::max<size_t>(path.rfind('/'), 1)));
  }
  for (const auto& [name, target] : top) {
    dirs.insert(target);
  }
  // A link in those directories to a copied file (libstdc++.so.6 -> libstdc++.so.6.0.30, the
  // name the dynamic linker used and the core's link map holds) becomes a link to the copy.
  // Whoever made the link, it can only lead to a copy: its target is checked as text.
  size_t made = 0;
  for (const auto& d : dirs) {
    auto fd = common::open_at(AT_FDCWD, d, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
    if (!fd) {
      continue;
    }
    std::vector<std::pair<std::string, std::string>> links; // name, copy it leads to
    (void)common::list_dir(fd->get(), [&](std::string_view n) {
      const std::string name(n);
      struct stat st {};
      if (links.size() >= k_max_aliases ||
          ::fstatat(fd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISLNK(st.st_mode)) {
        return;
      }
      const auto target = read_link(fd->get(), name);
      const auto to =
          target ? canonical(target->starts_with('/') ? *target : d + "/" + *target) : std::nullopt;
      if (to && copied.contains(*to) && !copied.contains(d + "/" + name)) {
        links.emplace_back(name, *to);
      }
    });
    if (links.empty()) {
      continue;
    }
    auto in = sysroot_dir(dir, d);
    for (const auto& [name, to] : links) {
      const std::string copy = dir.path() + "/" + std::string(k_sysroot) + to;
      if (in && ::symlinkat(copy.c_str(), in->get(), name.c_str()) == 0) {
        ++made;
      }
    }
  }
  return made;
}

} // namespace cli
