#include "handler/runtime_report.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/escape.hpp"
#include "common/base/io.hpp"
#include "common/crash/perf_map.hpp"
#include "common/sandbox/analysis_launcher.hpp"
#include "common/store/store.hpp"
#include "handler/context.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace handler {

namespace {

// What is read of the process's environment and argv to find the names.
constexpr size_t k_block_max = 256 << 10;
// Entries of a Node report directory looked at.
constexpr size_t k_dir_entries_max = 4096;
// The answer's header line (a path of at most 4096 bytes, each maybe escaped as \u00XX).
constexpr size_t k_header_max = 64 << 10;

// What the reader found for one candidate.
struct Found {
  std::string refused; // empty when `fd` is the file
  common::UniqueFd fd;
  struct stat st {};
};

long openat2_call(int dir, const char* path, int flags, uint64_t resolve) {
  struct open_how how {};
  how.flags = static_cast<__u64>(static_cast<unsigned>(flags));
  how.resolve = resolve;
  return ::syscall(SYS_openat2, dir, path, &how, sizeof how);
}

std::string why(int err) {
  switch (err) {
  case ENOENT:
    return "not found";
  case ELOOP:
    return "a symbolic link on the way";
  case EXDEV:
    return "outside the process's root or working directory";
  case EACCES:
  case EPERM:
    return "not readable by the crashing user";
  default:
    return std::strerror(err);
  }
}

// Opens `path` as the reader may: relative to the process's root (absolute) or working
// directory, no link followed, a regular file of `uid` modified since `start`.
Found open_report(int root, int cwd, const std::string& path, uid_t uid, int64_t start) {
  Found f;
  const bool absolute = path.starts_with('/');
  const int dir = absolute ? root : cwd;
  if (dir < 0) {
    f.refused = absolute ? "the process's root is unknown" : "the working directory is unknown";
    return f;
  }
  const uint64_t resolve =
      (absolute ? RESOLVE_IN_ROOT : RESOLVE_BENEATH) | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const long opath = openat2_call(dir, path.c_str(), O_PATH | O_CLOEXEC, resolve);
  if (opath < 0) {
    f.refused = why(errno);
    return f;
  }
  const common::UniqueFd o(static_cast<int>(opath));
  struct stat st {};
  if (::fstat(o.get(), &st) != 0) {
    f.refused = why(errno);
    return f;
  }
  if (!S_ISREG(st.st_mode)) {
    f.refused = "not a regular file";
    return f;
  }
  if (st.st_uid != uid) {
    f.refused = "owned by uid " + std::to_string(st.st_uid) + ", not the crashing uid";
    return f;
  }
  // The start time is known to the second (boot time + clock ticks): a second of slack.
  if (st.st_mtim.tv_sec + 1 < start) {
    f.refused = "last modified before the process started";
    return f;
  }
  // Opened for reading only now that it is known to be a regular file (a device might act on
  // open), through the descriptor, and checked to be the same file.
  const std::string self = "/proc/self/fd/" + std::to_string(o.get());
  common::UniqueFd rd(::open(self.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  struct stat again {};
  if (!rd) {
    f.refused = why(errno);
    return f;
  }
  if (::fstat(rd.get(), &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
    f.refused = "changed while it was opened";
    return f;
  }
  f.fd = std::move(rd);
  f.st = st;
  return f;
}

// Node without a file name: the newest report.*.<pid>.*.json of the directory.
Found find_node_report(int root, int cwd, const ReportCandidate& c, uid_t uid, int64_t start,
                       int64_t pid) {
  Found f;
  const bool absolute = c.path.starts_with('/');
  const int base = absolute ? root : cwd;
  if (base < 0) {
    f.refused = "the directory is unknown";
    return f;
  }
  const uint64_t resolve =
      (absolute ? RESOLVE_IN_ROOT : RESOLVE_BENEATH) | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const std::string where = c.path.empty() ? "." : c.path;
  const long d =
      openat2_call(base, where.c_str(), O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC, resolve);
  if (d < 0) {
    f.refused = why(errno);
    return f;
  }
  const common::UniqueFd dir(static_cast<int>(d));
  const std::string mid = "." + std::to_string(pid) + ".";
  std::string best;
  int64_t best_time = -1;
  size_t seen = 0;
  (void)common::list_dir(dir.get(), [&](std::string_view name) {
    if (++seen > k_dir_entries_max || !name.starts_with("report.") || !name.ends_with(".json") ||
        name.find(mid) == std::string_view::npos) {
      return;
    }
    struct stat st {};
    if (::fstatat(dir.get(), std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_mtim.tv_sec > best_time) {
      best_time = st.st_mtim.tv_sec;
      best = name;
    }
  });
  if (best.empty()) {
    f.refused = "not found";
    return f;
  }
  return open_report(dir.get(), dir.get(), best, uid, start);
}

// Closes every descriptor but `keep` (the core pipe among them: the kernel waits for its readers).
void close_all_but(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned from = 0;
  for (const int fd : keep) {
    if (fd < 0) {
      continue;
    }
    if (static_cast<unsigned>(fd) > from) {
      (void)::syscall(SYS_close_range, from, static_cast<unsigned>(fd) - 1, 0U);
    }
    from = static_cast<unsigned>(fd) + 1;
  }
  (void)::syscall(SYS_close_range, from, ~0U, 0U);
}

std::string dump_header(const nlohmann::json& h) {
  return h.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// At most `max` bytes of `fd` from `offset` on (less at its end).
std::string read_at_most(int fd, uint64_t offset, size_t max) {
  std::string data(max, '\0');
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t n =
        ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  return data;
}

// The perf map's answer to `out`: a JSON header line, then its last k_perf_map_max bytes from
// a line's start (a JIT appends: the newest code is at the end).
void read_perf_map(int out, int root, int cwd, const std::string& path, uid_t uid, int64_t start) {
  nlohmann::json h = {{"path", path}};
  const Found f = open_report(root, cwd, path, uid, start);
  if (!f.fd) {
    h["refused"] = f.refused;
    (void)common::write_all(out, dump_header(h) + "\n");
    return;
  }
  const auto size = static_cast<uint64_t>(std::max<off_t>(f.st.st_size, 0));
  const uint64_t from = size > common::k_perf_map_max ? size - common::k_perf_map_max : 0;
  std::string data = read_at_most(f.fd.get(), from, common::k_perf_map_max);
  if (from > 0) {
    const size_t nl = data.find('\n');
    data.erase(0, nl == std::string::npos ? data.size() : nl + 1);
  }
  h["file_size"] = size;
  (void)common::write_all(out, dump_header(h) + "\n");
  (void)common::write_all(out, data);
}

// The reader child's work, as the crashing user: the answer (a JSON header line, then the
// report's bytes) written to `out`, and the perf map's to `perf_out` when it is open.
[[noreturn]] void reader_main(int out, int perf_out, int root, int cwd,
                              const std::vector<ReportCandidate>& cs, const std::string& perf_path,
                              uid_t uid, gid_t gid, int64_t start, int64_t pid) {
  ::alarm(k_report_seconds);
  close_all_but({out, perf_out, root, cwd});
  nlohmann::json h = nlohmann::json::object();
  if (sandbox::become({uid, gid}) != sandbox::SandboxFailure::none) {
    h["refused"] = "could not take the crashing user's ids";
    for (const int fd : {out, perf_out}) {
      if (fd >= 0) {
        (void)common::write_all(fd, dump_header(h) + "\n");
      }
    }
    ::_exit(0);
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // The perf map first: the analysis waits for it.
  if (perf_out >= 0) {
    read_perf_map(perf_out, root, cwd, perf_path, uid, start);
  }
  std::string first_refusal;
  const ReportCandidate* first = nullptr;
  for (const ReportCandidate& c : cs) {
    Found f;
    if (c.path.empty() && !c.node_dir) {
      f.refused = c.named.starts_with('|') ? "a pipe to a program, not a file"
                                           : "a % specifier other than %p";
    } else if (c.node_dir) {
      f = find_node_report(root, cwd, c, uid, start, pid);
    } else {
      f = open_report(root, cwd, c.path, uid, start);
    }
    if (!f.fd) {
      if (!first && !(c.implicit && f.refused == "not found")) {
        first = &c;
        first_refusal = f.refused;
      }
      continue;
    }
    std::string data = read_at_most(f.fd.get(), 0, k_report_max + 1);
    const size_t got = data.size();
    const bool cut = got > k_report_max;
    data.resize(std::min(got, k_report_max));
    h["runtime"] = c.runtime;
    h["path"] = c.named.substr(0, 4096);
    h["file_size"] = static_cast<uint64_t>(f.st.st_size);
    h["truncated"] = cut;
    (void)common::write_all(out, dump_header(h) + "\n");
    (void)common::write_all(out, data);
    ::_exit(0);
  }
  if (first) {
    h["runtime"] = first->runtime;
    h["path"] = first->named.substr(0, 4096);
    h["refused"] = first_refusal;
  }
  (void)common::write_all(out, dump_header(h) + "\n");
  ::_exit(0);
}

std::string read_block(int proc, const char* name) {
  auto fd = common::open_at(proc, name, O_RDONLY | O_NOCTTY);
  if (!fd) {
    return {};
  }
  auto text = common::read_fd(fd->get(), name, k_block_max);
  return text ? *text : std::string();
}

} // namespace

// The pid the runtime knows itself by, in its own pid namespace, as it writes it in its report's
// name: %p, else its status's NSpid, else (no /proc status) the host's %P, right outside
// containers.
namespace {
int64_t own_pid(const Context& ctx) {
  return ctx.args.pid_ns.value_or(ctx.proc.ns_pid.value_or(ctx.args.pid.value_or(0)));
}
} // namespace

void note_runtime_report_names(Context& ctx) {
  if (!ctx.crashed.valid()) {
    return;
  }
  const int64_t pid = own_pid(ctx);
  const std::string environ = read_block(ctx.crashed.proc_dir(), "environ");
  const std::string argv = read_block(ctx.crashed.proc_dir(), "cmdline");
  ctx.report_reader.candidates = report_candidates(environ, argv, ctx.record.executable, pid);
}

namespace {

// Whether the process may have a perf map, asked as root before the reader is forked for it:
// only "not there" (the common case) saves the fork; anything else (a link, a file of another
// user) is for the reader to refuse, and the record to say why.
bool may_have_perf_map(int root, const std::string& path) {
  if (root < 0) {
    return false;
  }
  const long fd = openat2_call(root, path.c_str(), O_PATH | O_CLOEXEC,
                               RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    return true;
  }
  return errno != ENOENT && errno != ENOTDIR;
}

// Waits for the reader until its deadline, once; kills it there.
void wait_for_reader(ReportReader& rr) {
  if (rr.pid <= 0 || rr.finished) {
    return;
  }
  rr.finished = true;
  while (true) {
    if (::waitpid(rr.pid, &rr.status, WNOHANG) == rr.pid) {
      return;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          rr.deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0 || !rr.pidfd) {
      break;
    }
    struct pollfd p {
      rr.pidfd.get(), POLLIN, 0
    };
    (void)::poll(&p, 1, static_cast<int>(left));
  }
  ::kill(rr.pid, SIGKILL);
  (void)::waitpid(rr.pid, &rr.status, 0);
  rr.timed_out = true;
}

// The answer in a memfd the reader wrote: its JSON header and the bytes after it; nullopt when
// there is no header line.
std::optional<std::pair<nlohmann::json, std::string>> read_answer(int fd, size_t max) {
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    return std::nullopt;
  }
  auto text = common::read_fd(fd, "runtime report", k_header_max + max);
  if (!text) {
    return std::nullopt;
  }
  const size_t nl = text->find('\n');
  if (nl == std::string::npos || nl > k_header_max) {
    return std::nullopt;
  }
  nlohmann::json h = nlohmann::json::parse(text->substr(0, nl), nullptr, false);
  if (!h.is_object()) {
    return std::nullopt;
  }
  text->erase(0, nl + 1);
  return std::pair(std::move(h), std::move(*text));
}

} // namespace

void start_runtime_report_reader(Context& ctx) {
  ReportReader& rr = ctx.report_reader;
  const auto& candidates = rr.candidates;
  if (ctx.crashed.valid() && ctx.proc.ns_pid) {
    const std::string path = "/tmp/perf-" + std::to_string(*ctx.proc.ns_pid) + ".map";
    if (may_have_perf_map(ctx.crashed.root(), path)) {
      rr.perf_map_path = path;
    }
  }
  if (candidates.empty() && rr.perf_map_path.empty()) {
    return;
  }
  // Why nothing can be read: the report's section says it; a perf map only a warning.
  const auto refuse = [&](const std::string& why) {
    if (!candidates.empty()) {
      ctx.record.runtime_report = {{"runtime", candidates.front().runtime},
                                   {"path", candidates.front().named},
                                   {"refused", why}};
    }
    if (!rr.perf_map_path.empty()) {
      ctx.warnings.push_back("perf map " + rr.perf_map_path + " not read: " + why);
    }
  };
  if (!ctx.running_as_root || !ctx.crashed.valid() || !ctx.args.uid || !ctx.args.gid ||
      *ctx.args.uid < 0 || *ctx.args.gid < 0 ||
      *ctx.args.uid > static_cast<int64_t>(static_cast<uid_t>(-1)) ||
      *ctx.args.gid > static_cast<int64_t>(static_cast<gid_t>(-1))) {
    refuse("the handler cannot take the crashing user's ids");
    return;
  }
  const int64_t pid = own_pid(ctx);
  if (!ctx.proc.start_time) {
    refuse("the process's start time is unknown");
    return;
  }
  common::UniqueFd out(static_cast<int>(::memfd_create("runtime-report", MFD_CLOEXEC)));
  common::UniqueFd perf_out;
  if (!rr.perf_map_path.empty()) {
    perf_out.reset(static_cast<int>(::memfd_create("perf-map", MFD_CLOEXEC)));
  }
  if (!out || (!rr.perf_map_path.empty() && !perf_out)) {
    ctx.warnings.push_back(std::string("Failed to create the runtime report's buffer: ") +
                           std::strerror(errno));
    return;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    ctx.warnings.push_back(std::string("Failed to fork the runtime report's reader: ") +
                           std::strerror(errno));
    return;
  }
  if (child == 0) {
    // Never back into the handler's run: whatever throws ends the child, with no answer.
    try {
      reader_main(out.get(), perf_out ? perf_out.get() : -1, ctx.crashed.root(), ctx.crashed.cwd(),
                  candidates, rr.perf_map_path, static_cast<uid_t>(*ctx.args.uid),
                  static_cast<gid_t>(*ctx.args.gid), *ctx.proc.start_time, pid);
    } catch (...) {
    }
    ::_exit(1);
  }
  rr.pid = child;
  rr.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  rr.out = std::move(out);
  rr.perf_out = std::move(perf_out);
  if (!candidates.empty()) {
    rr.runtime = candidates.front().runtime;
    rr.named = candidates.front().named;
  }
  rr.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(k_report_seconds);
}

void take_perf_map(Context& ctx) {
  ReportReader& rr = ctx.report_reader;
  if (!rr.perf_out) {
    return;
  }
  wait_for_reader(rr);
  const common::UniqueFd fd = std::move(rr.perf_out);
  const std::string& path = rr.perf_map_path;
  if (rr.timed_out) {
    ctx.warnings.push_back("perf map " + path + " not read within " +
                           seconds_text(k_report_seconds));
    return;
  }
  auto answer = read_answer(fd.get(), common::k_perf_map_max);
  if (!answer) {
    ctx.warnings.push_back("perf map " + path + " not read: the reader gave no answer");
    return;
  }
  const auto& [h, data] = *answer;
  if (const auto it = h.find("refused"); it != h.end()) {
    ctx.warnings.push_back(
        "perf map " + path + " not used: " +
        common::to_valid_utf8(it->is_string() ? it->get<std::string>() : "?").substr(0, 256));
    return;
  }
  ctx.perf_map = std::move(answer->second);
}

void keep_runtime_report(Context& ctx) {
  ReportReader& rr = ctx.report_reader;
  if (rr.pid <= 0) {
    return;
  }
  wait_for_reader(rr);
  const int status = rr.status;
  rr.pid = -1;
  if (rr.candidates.empty()) {
    return; // the reader read only the perf map
  }
  if (rr.timed_out) {
    ctx.record.runtime_report = {{"runtime", rr.runtime},
                                 {"path", rr.named},
                                 {"refused", "not read within " + seconds_text(k_report_seconds)}};
    return;
  }
  // The answer comes from a process of the crashing user: read as untrusted, bounded.
  const int fd = rr.out.get();
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    return;
  }
  auto text = common::read_fd(fd, "runtime report", k_header_max + k_report_max);
  rr.out.reset();
  if (!text) {
    return;
  }
  const size_t nl = text->find('\n');
  if (nl == std::string::npos || nl > k_header_max) {
    std::string how = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "exit status " + std::to_string(WEXITSTATUS(status));
    ctx.record.runtime_report = {{"runtime", rr.runtime},
                                 {"path", rr.named},
                                 {"refused", "the reader gave no answer (" + how + ")"}};
    return;
  }
  nlohmann::json h = nlohmann::json::parse(text->substr(0, nl), nullptr, false);
  if (!h.is_object() || h.empty()) {
    return;
  }
  nlohmann::json& section = ctx.record.runtime_report;
  for (const char* key : {"runtime", "path", "refused"}) {
    if (auto it = h.find(key); it != h.end() && it->is_string()) {
      section[key] = it->get<std::string>().substr(0, 4096);
    }
  }
  if (section.contains("refused")) {
    return;
  }
  const std::string_view data = std::string_view(*text).substr(nl + 1);
  section["size"] = data.size();
  if (auto it = h.find("file_size"); it != h.end() && it->is_number_unsigned()) {
    section["file_size"] = it->get<uint64_t>();
  }
  section["truncated"] = h.value("truncated", false);
  if (!ctx.exe_dir) {
    section["refused"] = "the store cannot be written: " + ctx.store_error;
    return;
  }
  const std::string name = ctx.record.id + std::string(common::k_report_suffix);
  auto f = common::AtomicFile::create(ctx.exe_dir.get(), name, common::k_core_mode);
  common::Expected<void> written = f ? f->write(data) : std::unexpected(f.error());
  if (written) {
    written = f->commit();
  }
  if (!written) {
    section["refused"] = "not stored: " + written.error().message;
    return;
  }
  ctx.store->add_usage(data.size());
  section["stored"] =
      common::report_relpath(ctx.record.store_host, ctx.record.store_exe, ctx.record.id);
}

} // namespace handler
