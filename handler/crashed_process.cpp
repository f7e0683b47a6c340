#include "handler/crashed_process.hpp"

#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/crash/symbolize.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <string_view>

namespace handler {

namespace {

// Distinct files mapped from offset 0: a module's ELF header. Real processes map far fewer; the
// bound keeps the handler's descriptors (and the analysis child's) in its limits.
constexpr size_t k_max_mapped_files = 512;
constexpr size_t k_max_maps_bytes = 4 << 20;

common::UniqueFd open_in(int dir, const char* name, int flags) {
  return common::UniqueFd(::openat(dir, name, flags | O_CLOEXEC | O_NOCTTY));
}

} // namespace

// The pid a pidfd refers to, from /proc/self/fdinfo; -1 once the process is gone.
std::optional<int64_t> pidfd_pid(int pidfd) {
  auto info = common::read_file(AT_FDCWD, "/proc/self/fdinfo/" + std::to_string(pidfd), 8192);
  if (!info) {
    return std::nullopt;
  }
  const auto pos = info->find("\nPid:");
  if (pos == std::string::npos) {
    return std::nullopt;
  }
  std::string_view value = std::string_view(*info).substr(pos + 5);
  value = value.substr(0, value.find('\n'));
  value.remove_prefix(std::min(value.find_first_not_of(" \t"), value.size()));
  return common::parse_number<int64_t>(value);
}

CrashedProcess CrashedProcess::open(int64_t pid, std::optional<int> pidfd) {
  CrashedProcess p;
  if (pid <= 0) {
    return p;
  }
  if (pidfd) {
    // A copy: the kernel's fd 3 stays where it is, the handle owns its own.
    common::UniqueFd own(::fcntl(*pidfd, F_DUPFD_CLOEXEC, 3));
    if (!own || pidfd_pid(own.get()) != pid) {
      return p;
    }
    p.m_pidfd = std::move(own);
  } else {
    p.m_pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)));
  }
  p.m_pid = pid;
  p.m_proc.reset(
      ::open(("/proc/" + std::to_string(pid)).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!p.m_proc) {
    return CrashedProcess();
  }
  p.m_mem = open_in(p.m_proc.get(), "mem", O_RDONLY);
  p.m_root = open_in(p.m_proc.get(), "root", O_PATH | O_DIRECTORY);
  p.m_cwd = open_in(p.m_proc.get(), "cwd", O_PATH | O_DIRECTORY);
  p.open_mapped_files();
  return p;
}

namespace {

std::string unpadded_hex(uint64_t v) {
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out;
  do {
    out.insert(out.begin(), k_digits[v & 0xf]);
    v >>= 4;
  } while (v != 0);
  return out;
}

} // namespace

// One line of /proc/<pid>/maps: "start-end perms offset dev inode path". Files mapped from
// offset 0 are opened through map_files/<start>-<end>: the kernel's reference to the mapped
// file, not a lookup of its path (which may name another file by now, or one the crasher
// could not read).
void CrashedProcess::open_mapped_files() {
  auto maps = common::open_at(m_proc.get(), "maps", O_RDONLY);
  auto files = common::open_at(m_proc.get(), "map_files", O_PATH | O_DIRECTORY);
  if (!maps || !files) {
    return;
  }
  auto text = common::read_fd(maps->get(), "maps", k_max_maps_bytes);
  if (!text) {
    return;
  }
  m_maps = *text;
  std::map<std::pair<dev_t, ino_t>, uint64_t> seen;
  std::string_view rest = m_maps;
  while (!rest.empty() && m_mapped.size() < k_max_mapped_files) {
    const size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    const size_t sp3 = sp2 == std::string_view::npos ? sp2 : line.find(' ', sp2 + 1);
    if (sp3 == std::string_view::npos ||
        line.substr(sp2 + 1, sp3 - sp2 - 1).find_first_not_of('0') != std::string_view::npos) {
      continue; // not from offset 0
    }
    const std::string range(line.substr(0, sp1));
    const size_t dash = range.find('-');
    const auto start = dash != std::string::npos
                           ? common::parse_number<uint64_t>(range.substr(0, dash), 16)
                           : std::nullopt;
    const auto end = dash != std::string::npos
                         ? common::parse_number<uint64_t>(range.substr(dash + 1), 16)
                         : std::nullopt;
    if (!start || !end) {
      continue;
    }
    // maps pads addresses to 8 hex digits, map_files names them without leading zeros (a
    // non-PIE executable at 0x400000 is "400000-461000" there).
    const std::string name = unpadded_hex(*start) + "-" + unpadded_hex(*end);
    common::UniqueFd opath = open_in(files->get(), name.c_str(), O_PATH);
    if (!opath) {
      continue; // anonymous memory, or the mapping went away
    }
    struct stat st {};
    if (::fstat(opath.get(), &st) != 0) {
      continue;
    }
    if (seen.contains({st.st_dev, st.st_ino})) {
      continue; // mapped twice from offset 0: the first mapping is the module's
    }
    seen.emplace(std::pair{st.st_dev, st.st_ino}, *start);
    // Only regular files on local file systems are opened for reading (a device or a FUSE
    // file might block or act on open).
    if (common::ModuleFile f = common::reopen_module_file(std::move(opath)); f.fd) {
      m_mapped.emplace(*start, std::move(f.fd));
    }
  }
}

bool CrashedProcess::still_the_same() const {
  return m_pidfd && ::syscall(SYS_pidfd_send_signal, m_pidfd.get(), 0, nullptr, 0) == 0 &&
         pidfd_pid(m_pidfd.get()) == m_pid;
}

int CrashedProcess::mapped_file(uint64_t start) const {
  const auto it = m_mapped.find(start);
  return it == m_mapped.end() ? -1 : it->second.get();
}

common::UniqueFd CrashedProcess::take_mapped_file(uint64_t start) {
  const auto it = m_mapped.find(start);
  if (it == m_mapped.end()) {
    return {};
  }
  common::UniqueFd fd = std::move(it->second);
  m_mapped.erase(it);
  return fd;
}

} // namespace handler
