// The verbs that give the core back: dump and debug.
#include "cli/corectl.hpp"
#include "cli/enrich.hpp"
#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/crash/symbolize.hpp"
#include "common/crash/zstd_stream.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cli {

namespace {

// Opens the stored core of a record, or reports why there is none to give.
std::expected<common::UniqueFd, Exit> open_core(Context& ctx, const Located& where,
                                                const common::Record& r) {
  if (r.core.removed) {
    return std::unexpected(report(Exit::failure, "The core of " + r.id +
                                                     " was removed by retention at " +
                                                     *r.core.removed + "; the record is kept"));
  }
  if (!r.core.present) {
    std::string why =
        "No core was stored for " + r.id + ": " + std::string(common::to_string(r.core.reason));
    if (!r.core.error.empty()) {
      why += " (" + common::printable(r.core.error) + ")";
    }
    return std::unexpected(report(Exit::failure, why));
  }
  // The path comes from the directory the record was found in, not from the record's text.
  const std::string rel = common::core_relpath(where.host_dir, where.exe_dir, where.id);
  const std::string path = ctx.store->root() + "/" + rel;
  auto fd = common::open_at(ctx.store->fd(), rel, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    const int err = fd.error().sys_errno;
    if (err == ENOENT) {
      return std::unexpected(
          report(Exit::failure, "The core file " + common::quoted(path) + " is missing"));
    }
    if (err == EACCES || err == EPERM) {
      return std::unexpected(
          report(Exit::denied,
                 "Permission denied reading " + common::quoted(path) +
                     (r.core.access == common::CoreAccess::root_only
                          ? " (this core is for root only: the process changed privileges or the "
                            "handler could not tell)"
                          : "")));
    }
    return std::unexpected(report(Exit::failure, "Failed to open " + common::quoted(path) + ": " +
                                                     std::strerror(err)));
  }
  if (r.core.truncated) {
    std::fprintf(stderr, "corectl: note: the core of %s is truncated (%s)\n", r.id.c_str(),
                 std::string(common::to_string(r.core.reason)).c_str());
  }
  return std::move(*fd);
}

Exit decompress(int in, int out, const std::string& id) {
  auto n = common::zstd_decompress(in, out);
  if (!n) {
    // zstd_decompress says "corrupted" for checksum and format failures.
    return report(Exit::failure, "Core of " + id + ": " + n.error().message);
  }
  return Exit::ok;
}

// Splits a --debugger command line on blanks, honouring '…' and "…" quotes. No shell is run:
// the debugger gets exactly these words, then the executable and the core.
std::vector<std::string> split_words(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char ch : s) {
    if (quote != 0) {
      if (ch == quote) {
        quote = 0;
      } else {
        cur += ch;
      }
    } else if (ch == '\'' || ch == '"') {
      quote = ch;
      in_word = true;
    } else if (ch == ' ' || ch == '\t' || ch == '\n') {
      if (in_word) {
        out.push_back(std::move(cur));
        cur.clear();
        in_word = false;
      }
    } else {
      cur += ch;
      in_word = true;
    }
  }
  if (in_word) {
    out.push_back(std::move(cur));
  }
  return out;
}

// The temporary core of `debug`, removed when corectl ends, also by a signal. Descriptors and a
// fixed name rather than paths: nothing from the record reaches a path we unlink, and the
// handler only makes async-signal-safe calls. g_core_made is set only once we created the core,
// so a failed open never removes a file that was there before.
constexpr const char* k_tmp_core = "core";
volatile sig_atomic_t g_tmp_parent = -1; // the directory holding ours
volatile sig_atomic_t g_tmp_dir = -1;    // ours, made by mkdtemp (0700)
volatile sig_atomic_t g_core_made = 0;
char g_tmp_name[32]; // "corectl-XXXXXX"

void remove_tmp() {
  if (g_core_made != 0 && g_tmp_dir >= 0) {
    ::unlinkat(g_tmp_dir, k_tmp_core, 0);
  }
  if (g_tmp_parent >= 0 && g_tmp_name[0] != '\0') {
    ::unlinkat(g_tmp_parent, g_tmp_name, AT_REMOVEDIR);
  }
}

extern "C" void on_fatal_signal(int signo) {
  remove_tmp(); // unlinkat is async-signal-safe
  ::signal(signo, SIG_DFL);
  ::raise(signo);
}

constexpr int k_fatal_signals[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT};

// Where the private directory goes: $TMPDIR, unless another user could have prepared it for us
// (corectl often runs as root via sudo, which may keep the caller's TMPDIR): it must be a
// directory of ours or root's, and writable by others only with the sticky bit. Else /var/tmp,
// as cores can be far larger than a tmpfs /tmp.
std::string temp_base() {
  const char* base = std::getenv("TMPDIR");
  struct stat st {};
  if (base == nullptr || *base != '/' || ::stat(base, &st) != 0 || !S_ISDIR(st.st_mode) ||
      (st.st_uid != ::getuid() && st.st_uid != 0) ||
      ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)) {
    return "/var/tmp";
  }
  return base;
}

// The record to work on (select_record()), checked to be the one its file name says: the id is
// used in messages and must not be able to pose as another record (or as a path).
std::expected<std::pair<Located, FullRecord>, Exit> find_checked(Context& ctx) {
  auto found = select_record(ctx);
  if (found &&
      (found->second.record.id != found->first.id || !common::is_record_id(found->first.id))) {
    return std::unexpected(report(
        Exit::failure, "The record " + common::quoted(found->first.id) + " names another id (" +
                           common::quoted(found->second.record.id) + "), not using it"));
  }
  return found;
}

} // namespace

Exit cmd_dump(Context& ctx) {
  auto found = find_checked(ctx);
  if (!found) {
    return found.error();
  }
  const auto& [where, full] = *found;
  if (!ctx.opts.output && ::isatty(STDOUT_FILENO) == 1) {
    return report(Exit::usage,
                  "Refusing to write a binary core to a terminal: use -o FILE or redirect");
  }
  auto in = open_core(ctx, where, full.record);
  if (!in) {
    return in.error();
  }
  if (!ctx.opts.output || *ctx.opts.output == "-") {
    return decompress(in->get(), STDOUT_FILENO, full.record.id);
  }
  // Written under a temporary name and renamed when complete and verified: a corrupted core
  // leaves no half-written FILE that looks like a core. 0600: a core holds process memory.
  const std::string& out = *ctx.opts.output;
  const size_t slash = out.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : out.substr(0, slash));
  const std::string name = slash == std::string::npos ? out : out.substr(slash + 1);
  auto dfd = common::open_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
  if (!dfd) {
    return report(Exit::failure, dfd.error().message);
  }
  auto file = common::AtomicFile::create(dfd->get(), name, 0600);
  if (!file) {
    return report(Exit::failure, file.error().message);
  }
  if (auto e = decompress(in->get(), file->fd(), full.record.id); e != Exit::ok) {
    return e;
  }
  if (auto c = file->commit(common::Replace::yes); !c) {
    return report(Exit::failure, c.error().message);
  }
  return Exit::ok;
}

namespace {

// The build-id the core saw for the executable (its entry in `mappings`); "" when unknown.
std::string recorded_build_id(const common::Record& r) {
  if (!r.mappings.is_array()) {
    return {};
  }
  for (const auto& m : r.mappings) {
    if (m.is_object() && m.value("path", std::string()) == r.executable) {
      const auto id = m.find("build_id");
      return id != m.end() && id->is_string() ? id->get<std::string>() : std::string();
    }
  }
  return {};
}

} // namespace

Exit cmd_debug(Context& ctx) {
  auto found = find_checked(ctx);
  if (!found) {
    return found.error();
  }
  const auto& [where, full] = *found;
  const common::Record& r = full.record;
  auto argv = split_words(ctx.opts.debugger.value_or("gdb"));
  if (argv.empty()) {
    return report(Exit::usage, "--debugger is empty");
  }
  auto in = open_core(ctx, where, r);
  if (!in) {
    return in.error();
  }
  // The executable goes on the debugger's command line as root: a record saying
  // "--eval-command=shell …" would be an option. The handler always records an absolute path.
  if (!r.executable.starts_with('/')) {
    return report(Exit::failure, "The record " + r.id + " names the executable " +
                                     common::quoted(r.executable) +
                                     ", not an absolute path; not passing it to the debugger");
  }
  // The executable the debugger gets: the one at the recorded path when it is still the one
  // that crashed, else the copy debuginfod servers hold for the recorded build-id.
  std::string executable = r.executable;
  const std::string recorded = recorded_build_id(r);
  bool usable = true;
  if (r.executable_deleted || ::access(r.executable.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "corectl: warning: the executable %s is %s; symbols may be missing\n",
                 common::printable(common::quoted(r.executable)).c_str(),
                 r.executable_deleted ? "deleted since the crash" : "not readable here");
    usable = false;
  } else if (!recorded.empty()) {
    // A rebuilt or upgraded executable at the same path gives the debugger wrong symbols and
    // wrong unwinding, silently: say so before it starts.
    const auto on_disk = common::read_build_id(r.executable);
    if (on_disk != recorded) {
      std::fprintf(stderr,
                   "corectl: warning: the executable %s has build-id %s, the crashed one had "
                   "%s; the backtrace may be wrong\n",
                   common::quoted(r.executable).c_str(), on_disk.value_or("(none)").c_str(),
                   recorded.c_str());
      usable = false;
    }
  }
  if (!usable && !recorded.empty()) {
    if (auto copy = fetch_executable(recorded)) {
      std::fprintf(stderr, "corectl: using %s from debuginfod (build-id %s)\n",
                   common::quoted(*copy).c_str(), recorded.c_str());
      executable = std::move(*copy);
    }
  }

  const std::string base = temp_base();
  auto parent = common::open_at(AT_FDCWD, base, O_RDONLY | O_DIRECTORY);
  if (!parent) {
    return report(Exit::failure, parent.error().message);
  }
  std::string dir = base + "/corectl-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    return report(Exit::failure, "Failed to create a temporary directory " + common::quoted(dir) +
                                     ": " + std::strerror(errno));
  }
  std::snprintf(g_tmp_name, sizeof g_tmp_name, "%s", dir.c_str() + base.size() + 1);
  g_tmp_parent = parent->get();
  for (int sig : k_fatal_signals) {
    ::signal(sig, on_fatal_signal);
  }
  const std::string core = dir + "/" + k_tmp_core;
  auto tmp = common::open_at(parent->get(), g_tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (tmp) {
    g_tmp_dir = tmp->get();
  }

  Exit result = Exit::ok;
  {
    auto out = tmp ? common::open_at(tmp->get(), k_tmp_core,
                                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600)
                   : common::Expected<common::UniqueFd>(std::unexpected(tmp.error()));
    if (!out) {
      result = report(Exit::failure,
                      "Failed to create " + common::quoted(core) + ": " + out.error().message);
    } else {
      g_core_made = 1;
      result = decompress(in->get(), out->get(), r.id);
    }
  }
  if (result == Exit::ok) {
    // gdb takes "--" as the end of its options (gdb -nx -batch -ex bt -- EXE CORE); other
    // debuggers get the two paths as they are, which is safe because both start with '/'.
    const std::string_view prog = argv.front();
    if (prog == "gdb" || prog.ends_with("/gdb")) {
      argv.emplace_back("--");
    }
    argv.push_back(executable);
    argv.push_back(core);
    std::vector<char*> cargv;
    for (auto& a : argv) {
      cargv.push_back(a.data());
    }
    cargv.push_back(nullptr);
    std::fflush(stdout);
    // The debugger owns the terminal: Ctrl-C interrupts it, not us (we would leave the core).
    auto old_int = ::signal(SIGINT, SIG_IGN);
    auto old_quit = ::signal(SIGQUIT, SIG_IGN);
    const pid_t pid = ::fork();
    if (pid == 0) {
      for (int sig : k_fatal_signals) {
        ::signal(sig, SIG_DFL);
      }
      ::execvp(cargv[0], cargv.data());
      std::fprintf(stderr, "corectl: Failed to run '%s': %s\n", cargv[0], std::strerror(errno));
      ::_exit(127);
    }
    if (pid < 0) {
      result = report(Exit::failure, std::string("fork failed: ") + std::strerror(errno));
    } else {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        result = Exit::failure;
      }
    }
    ::signal(SIGINT, old_int);
    ::signal(SIGQUIT, old_quit);
  }
  remove_tmp();
  for (int sig : k_fatal_signals) {
    ::signal(sig, SIG_DFL);
  }
  g_core_made = 0;
  g_tmp_dir = -1;
  g_tmp_parent = -1;
  g_tmp_name[0] = '\0';
  return result;
}

} // namespace cli
