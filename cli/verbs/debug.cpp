// debug: a debugger (gdb) on the executable and the core, in a private directory.
#include "cli/context.hpp"
#include "cli/debuginfo/debug_root.hpp"
#include "cli/debuginfo/enrich.hpp"
#include "cli/verbs/core_file.hpp"
#include "cli/verbs/loose_core.hpp"
#include "cli/verbs/verbs.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
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
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cli {

namespace {

constexpr const char* k_tmp_core = "core"; // the core's name in the debugger's directory

// Splits a --debugger or -A command line into words as a shell would, without running one:
// blanks separate words, '…' keeps everything, "…" keeps everything but \" and \\, a backslash
// outside quotes keeps the next character. An unterminated quote or a trailing backslash is an
// error (nullopt). The debugger gets exactly these words.
std::optional<std::vector<std::string>> split_words(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (quote == '\'') {
      if (ch == quote) {
        quote = 0;
      } else {
        cur += ch;
      }
    } else if (quote == '"') {
      if (ch == quote) {
        quote = 0;
      } else if (ch == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\')) {
        cur += s[++i];
      } else {
        cur += ch;
      }
    } else if (ch == '\'' || ch == '"') {
      quote = ch;
      in_word = true;
    } else if (ch == '\\') {
      if (i + 1 == s.size()) {
        return std::nullopt;
      }
      cur += s[++i];
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
  if (quote != 0) {
    return std::nullopt;
  }
  if (in_word) {
    out.push_back(std::move(cur));
  }
  return out;
}

// Where the private directory goes: $TMPDIR, unless another user could have prepared it for us
// (corectl often runs as root via sudo, which may keep the caller's TMPDIR): it must be a
// directory of ours or root's, and writable by others only with the sticky bit. Else /var/tmp,
// as cores can be far larger than a tmpfs /tmp. A debugger run as another user always gets
// /var/tmp, which that user can reach (root's $TMPDIR may be private).
std::string temp_base(const std::optional<DebugUser>& as) {
  const char* base = std::getenv("TMPDIR");
  struct stat st {};
  if (as || base == nullptr || *base != '/' || ::stat(base, &st) != 0 || !S_ISDIR(st.st_mode) ||
      (st.st_uid != ::getuid() && st.st_uid != 0) ||
      ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)) {
    return "/var/tmp";
  }
  return base;
}

} // namespace

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

namespace {

// Who runs the debugger. Root debugging another user's crash whose core that user may read
// (`core.access` = owner) runs it as that user: the core, the link map in its memory and the
// files it names are the crasher's, and a debugger parsing them should hold no more privilege
// than the crasher. Root-only cores (setuid and similar) may hold memory their user must not
// read, and a debugger running as that user could be traced by them: those stay root's, with
// the same restrictions on what the debugger opens. Anyone else runs it as themselves.
std::optional<DebugUser> debugger_user(const common::Record& r) {
  constexpr int64_t k_max_id = 0xfffffffeLL; // (uid_t)-1 means "unchanged" to setresuid
  if (::geteuid() != 0 || r.core.access != common::CoreAccess::owner || !r.uid || !r.gid ||
      *r.uid <= 0 || *r.uid > k_max_id || *r.gid < 0 || *r.gid > k_max_id) {
    return std::nullopt;
  }
  return DebugUser{static_cast<uid_t>(*r.uid), static_cast<gid_t>(*r.gid)};
}

// What the parent found out about the executable before the debugger's child runs.
struct ExecutablePlan {
  std::string recorded;               // the build-id the core saw; "" when unknown
  std::optional<FetchedFile> fetched; // debuginfod's copy, when the one on disk is not it
};

ExecutablePlan plan_executable(const common::Record& r, bool quiet) {
  ExecutablePlan plan;
  plan.recorded = recorded_build_id(r);
  if (!common::is_hex(plan.recorded)) {
    plan.recorded.clear();
  }
  bool usable = true;
  const bool readable = !r.executable_deleted && ::access(r.executable.c_str(), R_OK) == 0;
  const int missing = readable ? 0 : errno;
  if (!readable && !r.executable_deleted && missing == ENOENT) {
    // A container's case: the process ran its program from a mount only its own mount
    // namespace had (a bind mount, a volume), and the namespace ended with it. The handler
    // read the file through /proc/<pid>/map_files while the process existed, to name the
    // record's frames, but keeps no copy: a store of every crashed program's files would be
    // the crashers' to fill. So the debugger can only have the same build by its build-id.
    std::fprintf(
        stderr,
        "corectl: warning: the executable %s is not on this host's file system: it was on a "
        "mount of the crashed process's own mount namespace, gone with it, or was removed "
        "since. The record names its frames (corectl info) but keeps no copy of the file; "
        "%s\n",
        common::printable(common::quoted(r.executable)).c_str(),
        plan.recorded.empty()
            ? "without its build-id it cannot be looked up: symbols will be missing"
            : ("the debugger gets it by build-id " + plan.recorded +
               " from debuginfod (DEBUGINFOD_URLS) or not at all")
                  .c_str());
    usable = false;
  } else if (!readable) {
    std::fprintf(stderr, "corectl: warning: the executable %s is %s; symbols may be missing\n",
                 common::printable(common::quoted(r.executable)).c_str(),
                 r.executable_deleted ? "deleted since the crash" : "not readable here");
    usable = false;
  } else if (!plan.recorded.empty()) {
    // A rebuilt or upgraded executable at the same path gives the debugger wrong symbols and
    // wrong unwinding, silently: say so before it starts.
    const auto on_disk = common::read_build_id(r.executable);
    if (on_disk != plan.recorded) {
      std::fprintf(stderr,
                   "corectl: warning: the executable %s has build-id %s, the crashed one had "
                   "%s; the backtrace may be wrong\n",
                   common::printable(common::quoted(r.executable)).c_str(),
                   common::printable(on_disk.value_or("(none)")).c_str(), plan.recorded.c_str());
      usable = false;
    }
  }
  if (!usable && !plan.recorded.empty()) {
    plan.fetched = fetch_executable(plan.recorded);
    if (plan.fetched && !quiet) {
      std::fprintf(stderr, "corectl: using %s from debuginfod (build-id %s)\n",
                   common::printable(common::quoted(plan.fetched->path)).c_str(),
                   plan.recorded.c_str());
    }
  }
  return plan;
}

// The debugger run as another user is in a session of its own (see cmd_debug): the terminal's
// Ctrl-C reaches us, and goes on to it.
volatile sig_atomic_t g_child = -1;

extern "C" void forward_interrupt(int /*signo*/) {
  if (g_child > 0) {
    ::kill(g_child, SIGINT);
  }
}

// True when `path` is set and not a directory owned by root (a missing one counts as foreign:
// someone may still make it).
bool foreign_dir(const char* path) {
  struct stat st {};
  return path != nullptr && *path != '\0' &&
         (::stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0);
}

bool is_gdb(std::string_view prog) {
  return prog == "gdb" || prog.ends_with("/gdb");
}

// The child's work, after it became the debugger's user: the core and the sysroot into `dir`,
// then the debugger. Returns only on failure, with the exit status to leave with.
Exit run_debugger(const Context& ctx, const common::Record& r, const DebugDir& dir, int core_in,
                  CoreForm form, const std::string& what, const ExecutablePlan& plan,
                  std::vector<std::string> argv) {
  const std::string core = dir.path() + "/" + k_tmp_core;
  {
    auto out =
        common::open_at(dir.fd(), k_tmp_core, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (!out) {
      return report(Exit::failure,
                    "Failed to create " + common::quoted(core) + ": " + out.error().message);
    }
    if (auto e = write_core(core_in, out->get(), what, form); e != Exit::ok) {
      return e;
    }
  }
  // Only copies reach the debugger: of the files the mappings name with the build-id the core
  // saw, then of the executable (from debuginfod when the one on disk is another build).
  std::set<std::string> copied = fill_sysroot(dir, r.mappings);
  std::optional<std::string> executable;
  const std::string in_sysroot = dir.path() + "/" + std::string(k_sysroot) + r.executable;
  if (!plan.recorded.empty() && common::read_build_id(in_sysroot) == plan.recorded) {
    executable = in_sysroot;
  } else if (plan.fetched) {
    ::unlinkat(dir.fd(), (std::string(k_sysroot) + r.executable).c_str(), 0);
    if (::lseek(plan.fetched->fd.get(), 0, SEEK_SET) == 0) {
      if (auto copy = add_to_sysroot(dir, r.executable, plan.fetched->fd.get(), plan.recorded,
                                     Verify::build_id)) {
        executable = *copy;
      }
    }
  }
  if (!executable && !r.executable_deleted) {
    // No build-id to check it by, or not the one that crashed (warned about already): still a
    // copy, so that the debugger never opens the crasher's path itself.
    if (auto copy = copy_module(dir, r.executable, "", Verify::none)) {
      executable = *copy;
    } else if (copy.error().sys_errno != EEXIST) {
      std::fprintf(stderr, "corectl: warning: not giving the debugger the executable %s: %s\n",
                   common::printable(common::quoted(r.executable)).c_str(),
                   common::printable(copy.error().message).c_str());
    } else {
      executable = in_sysroot;
    }
  }

  if (executable) {
    copied.insert(r.executable);
  }
  add_aliases(dir, copied);

  if (is_gdb(argv.front())) {
    // Run after gdb's init files, before it loads the executable and the core: no scripts the
    // crasher's files could name (.debug_gdb_scripts, -gdb.py, a .gdbinit here), no network
    // unless asked, and shared libraries looked up in the private sysroot only (an empty
    // solib-search-path: gdb would otherwise also try each library's own path).
    std::vector<std::string> safety = {
        "-iex", "set auto-load off",
        "-iex", ctx.opts.debuginfod ? "set debuginfod enabled on" : "set debuginfod enabled off",
        "-iex", "set solib-search-path",
        "-iex", "set sysroot " + dir.path() + "/" + std::string(k_sysroot),
    };
    // The init files of a home that is not root's are someone else's commands: `sudo -E` keeps
    // the caller's HOME, and gdb as root would run that user's ~/.gdbinit.
    if (::geteuid() == 0 &&
        (foreign_dir(std::getenv("HOME")) || foreign_dir(std::getenv("XDG_CONFIG_HOME")))) {
      std::fprintf(stderr, "corectl: not reading gdb's init files of $HOME or $XDG_CONFIG_HOME: "
                           "not root's\n");
      safety.insert(safety.begin(), "-nh");
    }
    argv.insert(argv.begin() + 1, safety.begin(), safety.end());
    // gdb takes "--" as the end of its options (gdb -nx -batch -ex bt -- EXE CORE).
    if (executable) {
      argv.insert(argv.end(), {"--", *executable, core});
    } else {
      argv.insert(argv.end(), {"--core", core});
    }
  } else {
    // Other debuggers get the two paths as they are, which is safe because both start with '/'.
    argv.push_back(executable.value_or(r.executable));
    argv.push_back(core);
  }
  if (::chdir(dir.path().c_str()) != 0) {
    return report(Exit::failure,
                  "Failed to enter " + common::quoted(dir.path()) + ": " + std::strerror(errno));
  }
  std::vector<char*> cargv;
  for (auto& a : argv) {
    cargv.push_back(a.data());
  }
  cargv.push_back(nullptr);
  std::fflush(stdout);
  ::execvp(cargv[0], cargv.data());
  std::fprintf(stderr, "corectl: Failed to run '%s': %s\n", common::printable(cargv[0]).c_str(),
               std::strerror(errno));
  return Exit::failure;
}

} // namespace

Exit cmd_debug(Context& ctx) {
  // The record and its core: a stored crash, or a core given with --file (analysed here, and
  // debugged as the caller whatever it says about its user).
  std::optional<LooseCore> loose;
  std::optional<std::pair<Located, FullRecord>> found;
  if (ctx.opts.file) {
    auto core = open_loose_core(*ctx.opts.file);
    if (!core) {
      return core.error();
    }
    loose.emplace(std::move(*core));
  } else {
    auto checked = find_checked(ctx);
    if (!checked) {
      return checked.error();
    }
    found.emplace(std::move(*checked));
  }
  const common::Record& r = loose ? loose->full.record : found->second.record;
  const CoreForm form = loose ? CoreForm::plain : CoreForm::zstd;
  const std::string what = loose ? loose->path : r.id;
  auto argv = split_words(ctx.opts.debugger.value_or("gdb"));
  if (!argv) {
    return report(Exit::usage, "--debugger has an unterminated quote or a trailing backslash");
  }
  if (argv->empty()) {
    return report(Exit::usage, "--debugger is empty");
  }
  // -A: the caller's own arguments, after ours (gdb's safety options go right after its name),
  // before the executable and the core. They may change what ours set: the caller chooses the
  // whole debugger command with --debugger anyway; ours guard against the crash, not the caller.
  if (ctx.opts.debugger_args) {
    auto more = split_words(*ctx.opts.debugger_args);
    if (!more) {
      return report(Exit::usage, "-A has an unterminated quote or a trailing backslash");
    }
    argv->insert(argv->end(), more->begin(), more->end());
  }
  common::UniqueFd in;
  if (loose) {
    in = std::move(loose->fd);
  } else if (auto stored = open_core(ctx, found->first, r)) {
    in = std::move(*stored);
  } else {
    return stored.error();
  }
  // The executable goes on the debugger's command line as root: a record saying
  // "--eval-command=shell …" would be an option. The handler always records an absolute path.
  if (!r.executable.starts_with('/')) {
    return report(Exit::failure,
                  (loose ? "The core " + common::quoted(what) : "The record " + r.id) +
                      " names the executable " + common::quoted(r.executable) +
                      ", not an absolute path; not passing it to the debugger");
  }
  const ExecutablePlan plan = plan_executable(r, ctx.opts.quiet);
  // A crash of a bucket happened on another host: its uid means nothing here, and the core was
  // downloaded by the caller, who debugs it as themselves.
  const std::optional<DebugUser> as = loose || ctx.remote ? std::nullopt : debugger_user(r);
  if (as && !ctx.opts.quiet) {
    std::fprintf(stderr, "corectl: running the debugger as uid %u, the crash's owner\n",
                 static_cast<unsigned>(as->uid));
  }
  auto dir = DebugDir::create(temp_base(as), as);
  if (!dir) {
    return report(Exit::failure, dir.error().message);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  // The debugger owns the terminal: Ctrl-C interrupts it (or the extraction in the child), not
  // us: we stay to remove the directory.
  auto old_int = ::signal(SIGINT, as ? forward_interrupt : SIG_IGN);
  auto old_quit = ::signal(SIGQUIT, SIG_IGN);
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (int sig : {SIGTERM, SIGHUP, SIGINT, SIGQUIT}) {
      ::signal(sig, SIG_DFL);
    }
    Exit e = Exit::failure;
    if (!as) {
      e = run_debugger(ctx, r, *dir, in.get(), form, what, plan, std::move(*argv));
    } else if (::setsid() < 0) {
      // Root's terminal must not be the controlling terminal of a process its user can trace:
      // TIOCSTI on it would type commands into root's shell once we are gone. In a session of
      // its own the debugger still reads and writes the terminal; Ctrl-C reaches it through us.
      e = report(Exit::failure, std::string("Failed to start a session: ") + std::strerror(errno));
    } else if (auto b = become(*as); !b) {
      e = report(Exit::failure, b.error().message);
    } else {
      e = run_debugger(ctx, r, *dir, in.get(), form, what, plan, std::move(*argv));
    }
    std::fflush(stderr);
    ::_exit(e == Exit::ok ? 1 : static_cast<int>(e));
  }
  g_child = pid;
  Exit result = Exit::ok;
  if (pid < 0) {
    result = report(Exit::failure, std::string("fork failed: ") + std::strerror(errno));
  } else {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      result = WIFEXITED(status) && WEXITSTATUS(status) == static_cast<int>(Exit::denied)
                   ? Exit::denied
                   : Exit::failure;
    }
  }
  ::signal(SIGINT, old_int);
  ::signal(SIGQUIT, old_quit);
  g_child = -1;
  return result; // the directory goes with `dir`
}

} // namespace cli
