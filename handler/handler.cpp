#include "handler/handler.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/escape.hpp"
#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "common/base/log.hpp"
#include "common/base/parse.hpp"
#include "common/base/proc_stat.hpp"
#include "common/base/signals.hpp"
#include "common/base/units.hpp"
#include "common/crash/capture.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/symbolize.hpp"
#include "common/store/acl.hpp"
#include "common/store/names.hpp"
#include "common/store/record_bound.hpp"
#include "common/store/store.hpp"
#include "common/store/user_view.hpp"
#include "handler/admission.hpp"
#include "handler/analysis_child.hpp"
#include "handler/analysis_wire.hpp"
#include "handler/core_args.hpp"
#include "handler/privileges.hpp"
#include "handler/procinfo.hpp"
#include "handler/watchdog.hpp"
#include "process_core_version.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <exception>
#include <memory>

namespace handler {

namespace {

using common::CoreReason;

// Everything one run knows, filled step by step.
struct Context {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  common::CoreArgs args;
  common::Config config;
  std::vector<std::string> warnings; // go into record.handler.warnings and the log
  common::UniqueFd input;            // the core pipe, moved above fd 2
  CrashedProcess crashed; // taken while the process exists; every later reader of it uses it
  ProcFacts proc;
  std::optional<common::Store> store;
  common::UniqueFd exe_dir;     // <store>/<host>/<exe>, opened after dropping privileges
  common::UniqueFd runtime_dir; // root-only: capture slots and rate-limit locks
  common::UniqueFd slot;        // the capture slot held (flock), when not lean
  common::UniqueFd user_slot;   // the crashing uid's capture slot held (OFD lock), when not lean
  common::UniqueFd rate_lock;   // this executable's rate-limit lock file
  bool lean = false;            // no slot: record without reading the core
  std::string lean_reason;      // which limit made the capture lean
  common::UniqueFd reservation; // rate-limit reservation in exe_dir, released after the record
  std::unique_ptr<Watchdog> watchdog;
  std::string store_error; // why the store cannot be written, if so
  bool running_as_root = false;
  common::CoreScanner scanner; // sees every byte of the core as it streams past
  common::Record record;
  std::optional<uid_t> reader; // the crashing user, granted read access by ACL (step 8)
  RecordSize record_size = RecordSize::full; // minimal when the store has no room (step 7)
};

// The pipe the kernel writes the core into is 64 KiB; a bigger one lets the kernel run ahead of
// us and release the crashed process sooner. 1 MiB is the default pipe-max-size.
constexpr int k_pipe_size = 1 << 20;
// MESSAGE_ID of the crash line in the journal (documented in docs/record.md).
constexpr std::string_view k_crash_message_id = "dbba4d8a928544e79ac34a21f9399051";
// systemd-coredump's catalog MESSAGE_ID ("Process … dumped core."): the line carries it too,
// so coredumpctl, `journalctl MESSAGE_ID=…` queries and log pipelines made for
// systemd-coredump find process-core's crashes. A journal field may be given twice.
constexpr std::string_view k_coredump_message_id = "fc2e22bc6ee647b6b90729ab34a250b1";
// How stale the store's usage estimate may be before a crash walks the store again.
constexpr unsigned k_usage_max_age = 300;
// The overflow uid/gid: what we become when the configured user does not exist.
constexpr uid_t k_nobody = 65534;
// Below this much room a core is not worth starting (it would be cut to nothing useful).
constexpr uint64_t k_min_room = 1 << 20;
// zstd's frame epilogue and the record must still fit after the compressed data stops.
constexpr uint64_t k_room_margin = 256 << 10;
// How far the scanner may read past a small max_core_size for the notes and the first build-ids.
constexpr uint64_t k_min_observed = 32ULL << 20;
// Unwinding and symbolizing every thread, after the core is committed and the crashed process
// released; what is not done by then is left out of the record (the threads keep frame #0).
constexpr auto k_analysis_budget = std::chrono::seconds(2);
// How long a capture waits for its executable's rate-limit lock (held by other handlers for one
// walk of the store) before it gives up the core.
constexpr auto k_rate_lock_wait = std::chrono::seconds(2);
// The analysis child's time to send its result after the unwinder's deadline, and what is kept
// of analysis_timeout for the mapped files and the record after the child is gone.
constexpr auto k_child_grace = std::chrono::milliseconds(500);
constexpr auto k_record_reserve = std::chrono::milliseconds(250);
// Beyond capture_timeout + analysis_timeout: writing the record and the log line.
constexpr auto k_deadline_grace = std::chrono::seconds(5);
// A minimal record (RecordSize::minimal) is cut to this: the identity, the core section and a
// few warnings; the kernel's strings (cmdline, executable) are the bulk of it.
constexpr size_t k_minimal_record_max = 16 << 10;

// 1. Secure the process before anything else can go wrong.
void secure_process(Context& ctx) {
  // The kernel starts us with fds 1 and 2 closed: the first open() would land on 1 and a log
  // line could end up inside a core. Move the pipe above 2 and fill 0-2 with /dev/null.
  const int in = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
  if (in >= 0) {
    ctx.input.reset(in);
  }
  for (int fd = 0; fd <= 2; ++fd) {
    if (fd == 0 || ::fcntl(fd, F_GETFD) < 0) {
      const int null = ::open("/dev/null", O_RDWR | O_NOCTTY);
      if (null >= 0 && null != fd) {
        ::dup2(null, fd);
        ::close(null);
      }
    }
  }
  // A handler that crashes must not dump into itself, and nothing we exec may gain privileges.
  // RLIMIT_CORE stays the kernel's {1,1}: raising it would allow recursive dumps.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::umask(0027);
  ctx.running_as_root = ::geteuid() == 0;
}

// True when the kernel started us for a core dump: usermode helpers are children of kthreadd
// (CLONE_PARENT in kernel/umh.c), a kernel thread.
bool started_by_kernel() {
  const pid_t parent = ::getppid();
  auto stat = common::read_file(AT_FDCWD, "/proc/" + std::to_string(parent) + "/stat", 4096);
  if (!stat) {
    return parent == 2;
  }
  // Field 9: the task's flags.
  constexpr uint64_t k_pf_kthread = 0x00200000;
  const auto field = common::stat_field(*stat, 9);
  const auto flags = field ? common::parse_number<uint64_t>(*field) : std::nullopt;
  return flags ? (*flags & k_pf_kthread) != 0 : parent == 2;
}

// 3. Configuration: --config, else the default path (which may be absent).
void load_configuration(Context& ctx) {
  if (started_by_kernel() && (ctx.args.config_path || ctx.args.store_path)) {
    // Options can hide in positional data (a hostname "--store=/x h" on a kernel that splits
    // it): from the kernel, only those core_pattern itself spells out count.
    auto pattern = common::read_file(AT_FDCWD, "/proc/sys/kernel/core_pattern", 4096);
    common::keep_pattern_options(ctx.args, pattern ? *pattern : std::string());
    ctx.warnings = ctx.args.warnings;
  }
  const std::string path = ctx.args.config_path.value_or(common::k_default_config_path);
  auto loaded = common::load_config(path, ctx.args.config_path ? common::MissingOk::no
                                                               : common::MissingOk::yes);
  if (!loaded) {
    ctx.warnings.push_back(loaded.error().message + ", using defaults");
  } else {
    ctx.config = std::move(loaded->config);
    for (auto& w : loaded->warnings) {
      ctx.warnings.push_back("config " + common::quoted(path) + " " + w);
    }
  }
  if (ctx.args.store_path) {
    ctx.config.store = *ctx.args.store_path;
  }
}

std::string own_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) {
    return {};
  }
  return buf;
}

// True when the crashed process is the system logger or PID 1 (which holds journald's sockets):
// by its comm or its executable, as either may be all that is known.
bool crashed_logger(const common::Record& r) {
  constexpr std::string_view k_journald = "systemd-journald";
  return r.pid == 1 || r.comm == k_journald.substr(0, 15) ||
         r.executable.ends_with("/" + std::string(k_journald));
}

// 4. Identity of the crash from the arguments, and /proc while the process still exists.
void identify_crash(Context& ctx) {
  common::Record& r = ctx.record;
  const common::CoreArgs& a = ctx.args;
  r.id = common::new_record_id();
  r.time = common::format_time(a.time.value_or(static_cast<int64_t>(::time(nullptr))));
  r.hostname = a.hostname;
  if (r.hostname.empty()) {
    // The pattern has no %h: the crash happened on this host (or in a container of it).
    r.hostname = own_hostname();
    ctx.warnings.push_back("no hostname argument (%h): using this host's name");
  }
  r.signal = a.signal.value_or(0);
  r.signal_name = a.signal ? common::signal_name(*a.signal) : "unknown";
  r.pid = a.pid;
  r.tid = a.tid;
  r.uid = a.uid;
  r.gid = a.gid;
  r.dump_mode = a.dump_mode;
  r.rlimit_core = a.rlimit;
  r.executable = common::decode_exe(a.exe_raw);
  r.executable_deleted = common::strip_deleted_suffix(r.executable);
  r.executable_raw = a.exe_raw;

  if (a.pid) {
    ctx.crashed = CrashedProcess::open(*a.pid, a.pidfd);
    if (a.pidfd && !ctx.crashed.valid()) {
      ctx.warnings.push_back("pidfd " + std::to_string(*a.pidfd) + " does not refer to pid " +
                             std::to_string(*a.pid) + ": /proc not read");
    }
    ctx.proc = gather_proc_facts(ctx.crashed, a.pidfd.has_value(), r.executable);
    if (!ctx.proc.verified) {
      ctx.crashed.reset(); // about another process, or nothing
    }
    for (auto& w : ctx.proc.warnings) {
      ctx.warnings.push_back(w);
    }
  }
  r.comm = a.comm.value_or(ctx.proc.comm.value_or(""));
  r.cmdline = ctx.proc.cmdline.value_or("");
  // %E cannot be decoded without loss (a '!' in a name reads as '/'); /proc/<pid>/exe is the
  // kernel's own path of the executable. ctx.proc holds it only when verified: through the
  // pidfd, or (without one) when it matched %E anyway.
  if (ctx.proc.exe) {
    r.executable = *ctx.proc.exe;
    r.executable_deleted = common::strip_deleted_suffix(r.executable);
  }
  r.container = container_json(ctx.proc);
  if (crashed_logger(r)) {
    // The journal socket's reader is the process being dumped: a full queue never drains
    // until this handler is done, so no log line of this run may wait for it.
    common::set_logger_wait(common::LoggerWait::never);
  }
  // A core of a process that changed privileges can hold secrets its user must not read.
  r.core.access = a.dump_mode == 1 ? common::CoreAccess::owner : common::CoreAccess::root_only;
  r.store_host = common::host_component(r.hostname);
  r.store_exe = common::exe_component(r.executable.empty() ? "(unknown)" : r.executable);
}

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
    // process is released, and nothing of the core is read or compressed.
    ctx.input.reset();
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

// Creates the store root if it is missing, owned by the store user (as tmpfiles.d would).
void ensure_store_root(Context& ctx, const std::optional<common::UserIds>& user) {
  struct stat st {};
  if (::stat(ctx.config.store.c_str(), &st) == 0) {
    return;
  }
  if (::mkdir(ctx.config.store.c_str(), common::k_dir_mode) != 0 && errno != EEXIST) {
    ctx.warnings.push_back("Failed to create store " + common::quoted(ctx.config.store) + ": " +
                           std::strerror(errno));
    return;
  }
  if (user && ::chown(ctx.config.store.c_str(), user->uid, user->gid) != 0) {
    ctx.warnings.push_back("Failed to chown store " + common::quoted(ctx.config.store) + ": " +
                           std::strerror(errno));
  }
}

// 6. Open the store as root, then give root up for good.
void open_store_and_drop(Context& ctx) {
  std::optional<common::UserIds> user;
  if (ctx.running_as_root && !ctx.config.user.empty()) {
    auto ids = common::lookup_user(ctx.config.user);
    if (ids && ids->uid == 0) {
      // Another name for root ("toor"): the cores would be root's files and the parsers would
      // run privileged. Same fallback as an unknown user.
      ctx.warnings.push_back("the store user " + common::quoted(ctx.config.user) +
                             " is root: continuing as nobody");
      user = common::UserIds{k_nobody, k_nobody};
    } else if (ids) {
      user = *ids;
    } else {
      // Fail closed: never parse hostile data as root, and never create store directories
      // that the real store user could not write later. nobody will most likely not be able
      // to write the store either; then the whole record goes to syslog.
      ctx.warnings.push_back(ids.error().message + ": continuing as nobody");
      user = common::UserIds{k_nobody, k_nobody};
    }
  }
  if (ctx.running_as_root) {
    ensure_store_root(ctx, user);
  }
  auto store = common::Store::open(ctx.config.store);
  if (!store) {
    ctx.store_error = store.error().message;
  } else {
    ctx.store.emplace(std::move(*store));
  }
  if (user) {
    if (auto r = common::drop_privileges(*user); !r) {
      // Refuse to go on as root with attacker-controlled data: record nothing rather than run
      // the parsers privileged. The log line still reports the crash.
      ctx.store.reset();
      ctx.store_error = r.error().message;
      return;
    }
  }
  if (ctx.store) {
    auto dir = ctx.store->open_exe_dir(ctx.record.store_host, ctx.record.store_exe);
    if (!dir) {
      ctx.store_error = dir.error().message;
    } else {
      ctx.exe_dir = std::move(*dir);
    }
  }
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
      .count();
}

// Threads in the core carry tids of the crasher's pid namespace, like /proc/<pid>/task seen
// through its pidfd: names and states are matched by tid.
void attach_thread_names(std::vector<common::ThreadTrace>& stacks,
                         const std::vector<ThreadInfo>& threads) {
  for (auto& t : stacks) {
    for (const auto& info : threads) {
      if (info.tid == t.tid) {
        t.name = info.name;
        t.state = info.state;
        break;
      }
    }
  }
}

// Whose rate-limit budget a crash uses: the uid of %u, none without it (then the budget is the
// executable's: NT_PRPSINFO's uid is the crasher's own namespace's and proves nothing here).
std::optional<uid_t> rate_owner(const common::CoreArgs& args) {
  if (!args.uid || *args.uid < 0 || *args.uid > static_cast<int64_t>(static_cast<uid_t>(-1))) {
    return std::nullopt;
  }
  return static_cast<uid_t>(*args.uid);
}

// The policy decision, with the rate limit counted and this capture's place reserved under
// the executable's lock: concurrent crashes of one executable then never store more than the
// burst (counting committed cores alone, all of them would see the same count).
CoreBudget decide_with_reservation(Context& ctx) {
  PolicyInput in;
  in.rlimit = ctx.args.rlimit;
  in.page_size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (auto space = common::fs_space(ctx.exe_dir.get())) {
    in.fs_available = space->available;
    in.fs_total = space->total;
  }
  in.store_usage = ctx.store->usage_estimate(k_usage_max_age);
  if (ctx.config.rate_limit_burst == 0) {
    return decide_policy(ctx.config, in);
  }
  LockGuard guard;
  if (ctx.rate_lock) {
    guard = lock_within(ctx.rate_lock.get(), k_rate_lock_wait);
    if (!guard) {
      CoreBudget b;
      b.reason = CoreReason::rate_limited;
      b.detail = "the rate-limit lock of this executable stayed busy";
      return b;
    }
  }
  // The budget is the crashing user's (%u) for this executable: a user's crash loop never uses up
  // another user's cores, and a system user's budget is its own too.
  const std::optional<uid_t> owner = rate_owner(ctx.args);
  in.recent_cores =
      recent_cores(*ctx.store, ctx.record.store_exe, owner, ctx.config.rate_limit_interval);
  CoreBudget budget = decide_policy(ctx.config, in);
  if (budget.store) {
    auto reserved = reserve_core(ctx.exe_dir.get(), ctx.record.id, owner);
    if (!reserved) {
      budget.store = false;
      budget.reason =
          reserved.error().sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
      budget.detail = reserved.error().message;
    } else {
      ctx.reservation = std::move(*reserved);
    }
  }
  return budget;
}

std::string seconds_text(unsigned s) {
  return std::to_string(s) + " s";
}

// 7. Stream the core: stdin → scanner and zstd → temp file → commit.
void stream_core(Context& ctx) {
  common::CoreInfo& core = ctx.record.core;
  if (ctx.lean) {
    core.present = false;
    core.reason = CoreReason::busy;
    core.error = ctx.lean_reason + ": recorded without reading the core";
    return;
  }
  CoreBudget budget;
  if (ctx.exe_dir) {
    budget = decide_with_reservation(ctx);
    ctx.record_size = budget.record;
  } else {
    budget.store = false;
    budget.reason = CoreReason::error;
    budget.detail = ctx.store_error;
  }

  std::optional<common::AtomicFile> file;
  const std::string core_name = ctx.record.id + std::string(common::k_core_suffix);
  if (budget.store) {
    auto f = common::AtomicFile::create(ctx.exe_dir.get(), core_name, common::k_core_mode);
    if (!f) {
      budget.store = false;
      budget.reason = f.error().sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
      budget.detail = f.error().message;
    } else {
      file.emplace(std::move(*f));
    }
  }

  common::CaptureOptions options;
  options.level = ctx.config.compression_level;
  options.workers = ctx.config.compression_threads;
  options.max_raw = budget.max_raw;
  options.max_stored = budget.max_stored;
  options.min_free = budget.keep_free;
  // The notes (registers, signal, mapped files) lie right after the headers and stay within the
  // scanner's 32 MiB buffer budget: read that far whatever the cap, never the rest.
  options.min_observed = k_min_observed;
  // From the start of the run, so that whatever came before (the /proc reads, a walk of the
  // store) counts against the same bound.
  options.deadline = ctx.started + std::chrono::seconds(ctx.config.capture_timeout);
  common::CaptureResult result;
  if (ctx.input) {
    result = common::capture_stream(ctx.input.get(), file ? file->fd() : -1, options, &ctx.scanner);
  } else {
    result.error = "no input: stdin is closed";
    result.read_failed = true;
  }
  // The stream is over: close the pipe now, before fsync and analysis, so that with
  // core_pipe_limit > 0 the kernel releases the crashed process (and its memory) at once.
  ctx.input.reset();
  ctx.record.handler.drained_ms = elapsed_ms(ctx.started);
  ctx.scanner.finish();
  const common::CoreFacts& facts = ctx.scanner.facts();
  core.size = result.received;
  if (facts.is_elf && facts.expected_size > 0) {
    core.expected_size = facts.expected_size;
  }

  if (result.received == 0) {
    // Nothing to keep (the file, if any, is discarded with `file`).
    core.present = false;
    core.reason = result.read_failed || result.stop == common::CaptureStop::deadline
                      ? CoreReason::error
                      : CoreReason::empty;
    core.error =
        result.stop == common::CaptureStop::deadline
            ? "no data before capture_timeout (" + seconds_text(ctx.config.capture_timeout) + ")"
            : result.error;
    return;
  }
  if (!file) {
    core.present = false;
    core.reason = budget.reason;
    core.error = budget.detail;
    return;
  }
  if (result.stop == common::CaptureStop::failed) {
    core.present = false;
    core.reason = result.sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
    core.error = result.error + ", continuing without core";
    return;
  }
  if (auto r = file->commit(); !r) {
    core.present = false;
    core.reason = r.error().sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
    core.error = r.error().message + ", continuing without core";
    return;
  }
  ctx.store->add_usage(result.stored_size);
  core.present = true;
  core.path = common::core_relpath(ctx.record.store_host, ctx.record.store_exe, ctx.record.id);
  core.stored_size = result.stored_size;
  // We stopped reading before the end (at a limit or the deadline): the core is a prefix.
  const bool cut_by_us = !result.complete && !result.read_failed;
  // The kernel sends no trailer: a core that ends before its last PT_LOAD was cut short on the
  // way (the process was killed mid-dump, or a helper before us in a chain gave up).
  const bool cut_short = facts.is_elf && facts.truncated;
  core.truncated = cut_by_us || cut_short || result.read_failed;
  if (!facts.is_elf) {
    core.reason = CoreReason::not_elf;
  } else if (core.truncated) {
    core.reason = CoreReason::truncated;
  } else {
    core.reason = CoreReason::stored;
  }
  if (cut_by_us) {
    switch (result.stop) {
    case common::CaptureStop::max_stored:
      core.error = budget.detail;
      break;
    case common::CaptureStop::deadline:
      core.error = "cut at capture_timeout (" + seconds_text(ctx.config.capture_timeout) + ")";
      break;
    default:
      core.error = "cut at max_core_size";
      break;
    }
  } else if (result.read_failed) {
    core.error = result.error;
  } else if (cut_short) {
    core.error = "the core stream ended after " + std::to_string(result.received) + " of " +
                 std::to_string(facts.expected_size) + " bytes";
  }
}

void capture_core(Context& ctx) {
  stream_core(ctx);
  if (record_size_for(ctx.record.core) == RecordSize::minimal) {
    ctx.record_size = RecordSize::minimal;
  }
  // An abandoned core releases its place at once. A committed one keeps its reservation until
  // the record is written: until then only the reservation says whose core it is.
  if (ctx.reservation && !ctx.record.core.present) {
    release_reservation(ctx.exe_dir.get(), ctx.record.id, std::move(ctx.reservation));
  }
}

// Every thread unwound with the module files' CFI, symbols and lines, signature v2 — in a
// forked child under hard limits (handler/analysis_child): libdw and libelf may exit or crash on
// hostile module files or out of memory, and the record must not go with them. The child works
// on the scanner's facts as they are in memory (shared copy-on-write) and sends the analysis
// back over a pipe; on any failure the record keeps the scanner's crash site and v1 signature,
// and handler.analysis says why.
common::CrashAnalysis analyze_in_child(Context& ctx, int root) {
  const common::CoreFacts& facts = ctx.scanner.facts();
  const auto now = std::chrono::steady_clock::now();
  // The child's whole life fits in analysis_timeout, leaving time for the mapped files and the
  // record; the unwinder stops a little before the child is killed, to send what it has.
  const auto window = std::min<std::chrono::milliseconds>(
      k_analysis_budget + k_child_grace,
      std::chrono::seconds(ctx.config.analysis_timeout) - k_record_reserve);
  const auto kill_at = now + window;
  common::UnwindOptions unwind;
  unwind.root_fd = root;
  unwind.deadline = kill_at - std::min<std::chrono::milliseconds>(k_child_grace, window / 3);
  ChildLimits limits;
  limits.memory = ctx.config.analysis_memory_limit;
  limits.cpu_seconds =
      static_cast<unsigned>(std::chrono::ceil<std::chrono::seconds>(window).count()) + 1;
  limits.max_output = common::k_record_max;
  // Opened here, before the fork: the child opens nothing (handler/analysis_sandbox).
  // Module files through the handle's map_files (the files the process had mapped, whatever
  // their paths name now); by path only when there is no handle (the process was gone).
  common::ModuleOpener from_handle;
  if (ctx.crashed.valid()) {
    from_handle = [&](const common::FileMapping& m) {
      return ctx.crashed.take_mapped_file(m.start);
    };
  }
  const common::AnalysisFiles files = common::open_analysis_files(facts, unwind, from_handle);
  unwind.files = &files;
  const std::vector<int> keep = files.fds();
  limits.files += keep.size(); // the descriptors it is handed come on top
  const ChildResult child = run_in_child(
      [&] { return analysis_to_wire(common::analyze_crash(facts, unwind), limits.max_output); },
      keep, limits, kill_at);
  common::Record& r = ctx.record;
  std::string failure = child.failure;
  if (child.output) {
    auto wire = analysis_from_wire(*child.output, limits.max_output);
    if (wire) {
      r.handler.analysis = "ok";
      if (!wire->cut.empty()) {
        ctx.warnings.push_back("backtraces cut to fit the record: " + wire->cut);
      }
      return std::move(wire->analysis);
    }
    failure = wire.error().message;
  }
  r.handler.analysis = failure;
  ctx.warnings.push_back("crash analysis failed (" + failure +
                         "), continuing with the crash site from the core's notes");
  return {};
}

// 8. What the notes say: fill what the arguments did not give, the setuid policy, the crash
// site with its symbol, and findings about the mapped files.
void analyze_crash(Context& ctx) {
  const common::CoreFacts& facts = ctx.scanner.facts();
  common::Record& r = ctx.record;
  if (!facts.is_elf) {
    // No auxv either (nothing was read, or it is not a core): nothing shows the process changed
    // no privileges, so the crash stays root's.
    r.core.access = common::CoreAccess::root_only;
    return;
  }
  // The minimal pattern (%h %s %E) gives no pid, uid, gid: NT_PRPSINFO has them. Note that
  // they are in the crasher's own namespaces, unlike %P/%u/%g.
  if (!r.pid && facts.pid) {
    r.pid = facts.pid;
  }
  if (!r.tid && facts.tid) {
    r.tid = facts.tid;
  }
  if (!r.uid && facts.uid) {
    r.uid = *facts.uid;
  }
  if (!r.gid && facts.gid) {
    r.gid = *facts.gid;
  }
  if (r.comm.empty()) {
    r.comm = facts.fname;
  }
  if (r.cmdline.empty()) {
    r.cmdline = facts.psargs;
  }
  if (r.signal == 0 && (facts.si_signo || facts.cursig)) {
    r.signal = facts.si_signo.value_or(facts.cursig.value_or(0));
    r.signal_name = common::signal_name(r.signal);
  }
  // A core may be given to its user only when the core shows the process held no more
  // privileges than that user: dump mode 1, and an auxv with no AT_SECURE and real ids equal to
  // effective ids (CVE-2022-4415 was a setuid core handed to its user).
  // A core without an auxv (cut before it, or never written) proves nothing: root only.
  const bool auxv_clean = facts.at_secure && facts.at_uid && facts.at_euid && facts.at_gid &&
                          facts.at_egid && *facts.at_secure == 0 &&
                          *facts.at_uid == *facts.at_euid && *facts.at_gid == *facts.at_egid;
  r.core.access =
      r.dump_mode == 1 && auxv_clean ? common::CoreAccess::owner : common::CoreAccess::root_only;
  if (ctx.record_size == RecordSize::minimal) {
    // The store has no room: the backtraces and mapped files would only be cut away again.
    r.handler.analysis = "skipped: minimal record";
    return;
  }

  const int root = ctx.crashed.root();
  const auto analysis_start = std::chrono::steady_clock::now();
  common::CrashAnalysis analysis = analyze_in_child(ctx, root);
  r.handler.analysis_ms = elapsed_ms(analysis_start);
  attach_thread_names(analysis.stacks, ctx.proc.threads);
  std::optional<std::chrono::system_clock::time_point> started;
  if (ctx.proc.start_time) {
    started = std::chrono::system_clock::from_time_t(static_cast<time_t>(*ctx.proc.start_time));
  }
  // NT_FILE paths are the crasher's: looked up anywhere but in its own root (a container's
  // image) they name unrelated files, and "missing" or "replaced" would be false alarms. Symbols
  // are still looked up, since a build-id mismatch rejects a wrong file.
  std::vector<common::MappingFinding> findings;
  if (root >= 0) {
    findings = common::check_mapped_files(facts.files, facts.build_ids, started, root);
  } else if (!facts.files.empty()) {
    ctx.warnings.push_back("mapped files not checked: the crashed process's root could not be "
                           "verified (no -P%P -F%F, or it exited too early)");
  }
  r.crash = common::crash_to_json(facts, analysis);
  r.mappings = common::mappings_to_json(facts, findings);
  for (const auto& f : findings) {
    ctx.warnings.push_back("mapped file " + common::to_valid_utf8(f.path) + " " +
                           std::string(common::to_string(f.kind)) +
                           (f.detail.empty() ? "" : ": " + common::to_valid_utf8(f.detail)));
  }
}

// The crash line's journal fields: ours (PROCESS_CORE_*) and systemd-coredump's (COREDUMP_*,
// under both MESSAGE_IDs), see docs/record.md. Values are printable: journalctl shows them to
// operators as they are.
std::vector<common::LogField> journal_fields(const common::Record& r, const std::string& where,
                                             const std::string& store_root) {
  // `journalctl MESSAGE_ID=…` finds every crash process-core logged, by either id.
  std::vector<common::LogField> f = {{"MESSAGE_ID", std::string(k_crash_message_id)},
                                     {"MESSAGE_ID", std::string(k_coredump_message_id)}};
  auto add = [&](const char* name, const std::string& value) {
    if (!value.empty()) {
      f.push_back({name, common::printable(value)});
    }
  };
  auto number = [](const auto& value) { return value ? std::to_string(*value) : std::string(); };
  std::string unit;
  if (auto it = r.container.find("unit"); it != r.container.end() && it->is_string()) {
    unit = it->get<std::string>();
  }
  add("PROCESS_CORE_RECORD_ID", r.id);
  add("PROCESS_CORE_HOSTNAME", common::to_valid_utf8(r.hostname));
  add("PROCESS_CORE_EXECUTABLE", common::to_valid_utf8(r.executable));
  add("PROCESS_CORE_SIGNAL", std::to_string(r.signal));
  add("PROCESS_CORE_SIGNAL_NAME", r.signal_name);
  add("PROCESS_CORE_PID", number(r.pid));
  add("PROCESS_CORE_UID", number(r.uid));
  add("PROCESS_CORE_COMM", common::to_valid_utf8(r.comm));
  add("PROCESS_CORE_CORE", std::string(common::to_string(r.core.reason)));
  add("PROCESS_CORE_RECORD", where.starts_with("record /") ? where.substr(7) : where);
  if (auto it = r.crash.find("signature"); it != r.crash.end() && it->is_string()) {
    add("PROCESS_CORE_SIGNATURE", it->get<std::string>());
  }
  add("PROCESS_CORE_UNIT", unit);
  // systemd-coredump's names and formats (its coredump.c): what coredumpctl list/info read.
  add("COREDUMP_PID", number(r.pid));
  add("COREDUMP_UID", number(r.uid));
  add("COREDUMP_GID", number(r.gid));
  add("COREDUMP_SIGNAL", std::to_string(r.signal));
  add("COREDUMP_SIGNAL_NAME", r.signal_name.empty() ? "" : "SIG" + r.signal_name);
  add("COREDUMP_EXE", common::to_valid_utf8(r.executable));
  add("COREDUMP_COMM", common::to_valid_utf8(r.comm));
  add("COREDUMP_CMDLINE", common::to_valid_utf8(r.cmdline));
  add("COREDUMP_HOSTNAME", common::to_valid_utf8(r.hostname));
  add("COREDUMP_RLIMIT", number(r.rlimit_core));
  add("COREDUMP_UNIT", unit);
  if (const auto t = common::parse_time(r.time)) {
    add("COREDUMP_TIMESTAMP", std::to_string(*t * 1000000)); // microseconds, as systemd's
  }
  // The stored core is a zstd frame, which coredumpctl's dump and debug decompress by the
  // file's .zst ending; without it coredumpctl says the core is missing.
  if (r.core.present && !r.core.path.empty()) {
    add("COREDUMP_FILENAME", store_root + "/" + r.core.path);
  }
  return f;
}

// Adds o+x to a store directory the crashing user must pass through to reach their crash: the
// name of what is below must be known to open it, and records and cores stay unreadable without
// their own ACL entry. Nothing per user lands on a directory that all users share.
common::Expected<void> let_others_traverse(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return common::fail_errno("Failed to stat", errno);
  }
  if ((st.st_mode & S_IXOTH) == 0 && ::fchmod(fd, (st.st_mode & 07777) | S_IXOTH) != 0) {
    return common::fail_errno("Failed to set the mode", errno);
  }
  return {};
}

// 9. Let the crashing user read this crash, as coredumpctl does, when the core may be theirs
// (core.access "owner": dump mode 1, an auxv without AT_SECURE, real ids equal to effective ids)
// and the uid is one person's (common::acl_may_grant: not root, nobody, a system or DynamicUser
// uid, which other processes share). Only %u counts: the uid in NT_PRPSINFO is the crasher's own
// namespace's, which may name another user here. POSIX ACLs rather than group or mode bits: one
// named user on this crash's core and record, and on the user's own view directory
// (.by-user/<uid>, common/store/user_view), which links to them. The store, host and executable
// directories only become traversable by others; they never gain an entry per user.
void grant_owner_access(Context& ctx) {
  const common::Record& r = ctx.record;
  if (!ctx.exe_dir || r.core.access != common::CoreAccess::owner || !ctx.args.uid ||
      ctx.args.dump_mode != 1 || *ctx.args.uid < 0 ||
      *ctx.args.uid > static_cast<int64_t>(static_cast<uid_t>(-1)) ||
      !common::acl_may_grant(static_cast<uid_t>(*ctx.args.uid))) {
    return;
  }
  const auto uid = static_cast<uid_t>(*ctx.args.uid);
  std::string failed;
  auto check = [&](const common::Expected<void>& done, const std::string& what) {
    if (!done && failed.empty()) {
      failed = common::quoted(what) + ": " + done.error().message;
    }
  };
  check(let_others_traverse(ctx.store->fd()), ctx.config.store);
  const int host = ::openat(ctx.store->fd(), r.store_host.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (host >= 0) {
    const common::UniqueFd host_fd(host);
    check(let_others_traverse(host), r.store_host);
  } else {
    check(common::fail_errno("Failed to open", errno), r.store_host);
  }
  check(let_others_traverse(ctx.exe_dir.get()), r.store_host + "/" + r.store_exe);
  if (r.core.present) {
    const std::string name = r.id + std::string(common::k_core_suffix);
    const int core =
        ::openat(ctx.exe_dir.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (core >= 0) {
      const common::UniqueFd core_fd(core);
      check(common::grant_user_access(core, uid, common::AclAccess::read), name);
    }
  }
  const std::string view_name = std::string(common::k_user_view_dir) + "/" + std::to_string(uid);
  auto view = common::open_user_view(ctx.store->fd(), uid);
  if (!view) {
    check(std::unexpected(view.error()), view_name);
  } else {
    check(common::grant_user_access(view->get(), uid, common::AclAccess::list), view_name);
    check(common::add_to_user_view(ctx.store->fd(), view->get(), {r.store_host, r.store_exe, r.id}),
          view_name);
  }
  if (!failed.empty()) {
    ctx.warnings.push_back("Failed to let uid " + std::to_string(uid) + " read this crash (" +
                           failed + "), continuing: the user needs root to see it");
    return;
  }
  ctx.reader = uid; // and the record, when it is written
}

std::string outcome_text(const common::CoreInfo& core);

// Gives the watchdog what to write if the run is still going at `deadline`: the record as it
// is now, with `what` (the step that ran out of time) among its warnings.
void arm_watchdog(Context& ctx, Watchdog::Clock::time_point deadline, const std::string& what) {
  common::Record r = ctx.record;
  r.handler.version = PROCESS_CORE_VERSION;
  r.handler.warnings = ctx.warnings;
  r.handler.warnings.push_back(what);
  r.handler.duration_ms = std::chrono::duration<double, std::milli>(deadline - ctx.started).count();
  common::bound_record(r);
  const int dirfd = ctx.exe_dir ? ctx.exe_dir.get() : -1;
  const std::string line =
      fmt::format("Process {} ({}) of host {} crashed with SIG{}: core {}; {}",
                  r.pid ? std::to_string(*r.pid) : "?", common::to_valid_utf8(r.executable),
                  common::to_valid_utf8(r.hostname), r.signal_name, outcome_text(r.core), what);
  ctx.watchdog->arm(deadline, dirfd, r.id + std::string(common::k_record_suffix),
                    common::to_json_text(r), line);
}

std::string outcome_text(const common::CoreInfo& core) {
  std::string text = std::string(common::to_string(core.reason));
  if (core.present) {
    text +=
        " (" + common::human_size(core.size) + " → " + common::human_size(core.stored_size) + ")";
  }
  if (!core.error.empty()) {
    text += ": " + core.error;
  }
  return text;
}

// What is left of a record when the store has no room for it (see RecordSize): every crash
// still gets a record, but past keep_free or max_use a crash loop must not go on filling the disk
// with mapped-file lists and backtraces of up to k_record_max each.
void make_minimal(common::Record& r) {
  r.crash = nlohmann::json::object();
  r.mappings = nlohmann::json::array();
  r.handler.cut.push_back("minimal record: " + std::string(common::to_string(r.core.reason)) +
                          ", no crash site, backtraces or mapped files");
  common::bound_record(r, k_minimal_record_max);
}

// 9. The record is the commit point; then one line in the log.
int commit_record(Context& ctx) {
  if (ctx.watchdog && !ctx.watchdog->claim()) {
    // The watchdog is writing the record it was given and ends the process.
    for (;;) {
      ::pause();
    }
  }
  common::Record& r = ctx.record;
  r.handler.version = PROCESS_CORE_VERSION;
  r.handler.warnings = ctx.warnings;
  r.handler.duration_ms = elapsed_ms(ctx.started);
  if (ctx.record_size == RecordSize::minimal) {
    make_minimal(r);
  }
  // Hundreds of mapped files with long names must not make a record no reader will load.
  common::bound_record(r);
  int status = 0;
  std::string where;
  if (ctx.exe_dir) {
    const std::string name = r.id + std::string(common::k_record_suffix);
    // The crashing user's ACL goes on before the record is linked in: it is never visible
    // without it.
    auto file = common::AtomicFile::create(ctx.exe_dir.get(), name, common::k_file_mode);
    common::Expected<void> w = file ? common::Expected<void>() : std::unexpected(file.error());
    if (w && ctx.reader) {
      if (auto g = common::grant_user_access(file->fd(), *ctx.reader, common::AclAccess::read);
          !g) {
        spdlog::warn("{}: Failed to let uid {} read the record: {}", r.id, *ctx.reader,
                     g.error().message);
      }
    }
    const std::string text = common::to_json_text(r);
    if (w) {
      w = file->write(text);
    }
    if (w) {
      w = file->commit();
    }
    if (w) {
      // Records take disk too and count toward max_use: the estimate follows them between walks.
      ctx.store->add_usage(text.size());
    }
    if (!w) {
      status = 1;
      where = "record NOT written (" + w.error().message + ")";
    } else {
      where = "record " + ctx.config.store + "/" +
              common::record_relpath(r.store_host, r.store_exe, r.id);
    }
  } else {
    status = 1;
    where = "record NOT written (" + ctx.store_error + ")";
  }
  // The record names the core's uid now (or never will): the core counts by itself from here.
  if (ctx.reservation) {
    release_reservation(ctx.exe_dir.get(), r.id, std::move(ctx.reservation));
  }
  for (const auto& w : ctx.warnings) {
    spdlog::warn("{}: {}", r.id, common::printable(w));
  }
  const std::string pid = r.pid ? std::to_string(*r.pid) : "?";
  std::string site;
  if (r.crash.contains("module") && r.crash["module"].is_string()) {
    const auto& sym = r.crash["symbol"];
    site = " at " + (sym.is_object() ? sym.value("name", std::string()) + "+" +
                                           sym.value("offset", std::string("0x0"))
                                     : r.crash["module"].get<std::string>() + "+" +
                                           r.crash.value("module_offset", std::string("?")));
    if (sym.is_object()) {
      site += " (" + r.crash["module"].get<std::string>() + ")";
    }
  }
  const std::string line =
      fmt::format("Process {} ({}) of host {} crashed with SIG{}{}{}: core {}; {}", pid,
                  common::to_valid_utf8(r.executable), common::to_valid_utf8(r.hostname),
                  r.signal_name, common::crash_cause_detail(r.crash), common::to_valid_utf8(site),
                  outcome_text(r.core), where);
  const auto fields = journal_fields(r, where, ctx.config.store);
  if (status == 0) {
    common::log_event(spdlog::level::info, common::printable(line), fields);
  } else {
    // The record could not be stored: the log is all that is left of this crash, so it gets
    // the whole record.
    common::log_event(spdlog::level::err,
                      common::printable(line) + ": " +
                          to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                      fields);
  }
  return status;
}

void print_usage() {
  std::fputs("Usage: process-core [OPTIONS] [--] HOSTNAME SIGNAL EXECUTABLE...\n"
             "Core dump handler, run by the kernel through /proc/sys/kernel/core_pattern:\n"
             "  |/usr/sbin/process-core -P%P -I%I -u%u -g%g -t%t -c%c -d%d -F%F -- %h %s %E\n"
             "Reads the core on stdin, stores it compressed with a JSON record.\n"
             "  --config FILE   configuration (default /etc/process-core/process-core.conf)\n"
             "  --store DIR     store root (overrides the configuration)\n"
             "  --version       print the version\n",
             stdout);
}

// The run's catch boundary: what threw is a warning, the kernel's dump is stopped (with
// core_pipe_limit > 0 that also releases the crashed process), and the record is written with
// the core described as it is, or as an error when none was committed.
int record_internal_error(Context& ctx, const std::string& what) {
  ctx.warnings.push_back("internal error: " + what);
  ctx.input.reset();
  if (ctx.record.core.path.empty()) { // a committed core stays described as it is
    ctx.record.core.present = false;
    ctx.record.core.reason = CoreReason::error;
    if (ctx.record.core.error.empty()) {
      ctx.record.core.error = "internal error: " + what;
    }
  }
  try {
    // A capture that threw left its rate-limit reservation behind: it is over, either way.
    if (ctx.reservation) {
      release_reservation(ctx.exe_dir.get(), ctx.record.id, std::move(ctx.reservation));
    }
    return commit_record(ctx);
  } catch (...) {
    return 1;
  }
}

} // namespace

RecordSize record_size_for(const common::CoreInfo& core) {
  const bool no_room = core.reason == CoreReason::disk_full || core.reason == CoreReason::quota;
  return no_room && !core.present ? RecordSize::minimal : RecordSize::full;
}

CoreBudget decide_policy(const common::Config& config, const PolicyInput& in) {
  CoreBudget b;
  b.max_raw = config.max_core_size;
  // systemd's defaults cap both percentages at 4 GiB; ours are the same.
  const uint64_t keep_free = config.keep_free.resolve(in.fs_total, 4ULL << 30);
  const uint64_t max_use = config.max_use.resolve(in.fs_total, 4ULL << 30);
  b.keep_free = keep_free;
  const uint64_t free_room = in.fs_available > keep_free ? in.fs_available - keep_free : 0;
  const uint64_t quota_room = max_use > in.store_usage ? max_use - in.store_usage : 0;
  // Decided before the reasons below: a rate-limited crash loop on a full disk writes records
  // too.
  b.record =
      free_room < k_min_room || quota_room < k_min_room ? RecordSize::minimal : RecordSize::full;
  if (in.rlimit && *in.rlimit < in.page_size) {
    b.reason = CoreReason::rlimit;
    b.detail = "RLIMIT_CORE is " + std::to_string(*in.rlimit) + ": the process asked for no core";
    return b;
  }
  if (config.max_core_size < in.page_size) {
    b.reason = CoreReason::too_large;
    b.detail = "max_core_size is " + std::to_string(config.max_core_size) + " bytes";
    return b;
  }
  if (config.rate_limit_burst > 0 && in.recent_cores >= config.rate_limit_burst) {
    b.reason = CoreReason::rate_limited;
    b.detail = std::to_string(in.recent_cores) + " cores of this executable in the last " +
               std::to_string(config.rate_limit_interval) + " s";
    return b;
  }
  if (free_room < k_min_room) {
    b.reason = CoreReason::disk_full;
    b.detail = "free space " + common::human_size(in.fs_available) + " is at or below keep_free " +
               common::human_size(keep_free);
    return b;
  }
  if (quota_room < k_min_room) {
    b.reason = CoreReason::quota;
    b.detail = "store uses " + common::human_size(in.store_usage) + " of max_use " +
               common::human_size(max_use);
    return b;
  }
  b.store = true;
  b.reason = CoreReason::stored;
  if (free_room <= quota_room) {
    b.max_stored = free_room - k_room_margin;
    b.limit_reason = CoreReason::disk_full;
    b.detail = "cut to keep " + common::human_size(keep_free) + " free (keep_free)";
  } else {
    b.max_stored = quota_room - k_room_margin;
    b.limit_reason = CoreReason::quota;
    b.detail = "cut at the store quota max_use " + common::human_size(max_use);
  }
  return b;
}

int run(const std::vector<std::string>& args) {
  Context ctx;
  try {
    secure_process(ctx);                      // 1. fds, not dumpable, no new privileges
    ctx.args = common::parse_core_args(args); // 2. the core_pattern table
    if (ctx.args.help || ctx.args.version) {
      if (ctx.args.help) {
        print_usage();
      } else {
        std::puts("process-core " PROCESS_CORE_VERSION);
      }
      return 0;
    }
    ctx.warnings = ctx.args.warnings;
    common::init_logging("process-core", common::LogTarget::syslog);
    load_configuration(ctx); // 3. config file, --store
    // Whatever blocks from here on, the run ends by this time.
    const auto hard_deadline = ctx.started + std::chrono::seconds(ctx.config.capture_timeout) +
                               std::chrono::seconds(ctx.config.analysis_timeout) + k_deadline_grace;
    ctx.watchdog = std::make_unique<Watchdog>();
    identify_crash(ctx);      // 4. record identity, /proc before draining
    admit_capture(ctx);       // 5. a capture slot, or the lean path (pipe closed)
    open_store_and_drop(ctx); // 6. open the store as root, drop privileges
    {
      // What the watchdog writes if the capture never ends; the run's own record starts over.
      const common::CoreInfo before = ctx.record.core;
      common::CoreInfo& core = ctx.record.core;
      core.present = false;
      core.reason = CoreReason::error;
      core.error = "the handler reached its deadline before the core was read";
      arm_watchdog(ctx, hard_deadline,
                   "stopped at the deadline (capture_timeout + analysis_timeout) before the "
                   "capture ended");
      ctx.record.core = before;
    }
    capture_core(ctx); // 7. policy, stream, compress, commit the core
    arm_watchdog(ctx,
                 std::min(hard_deadline, std::chrono::steady_clock::now() +
                                             std::chrono::seconds(ctx.config.analysis_timeout)),
                 "analysis stopped at analysis_timeout (" +
                     seconds_text(ctx.config.analysis_timeout) +
                     "): crash site and mappings may be missing");
    analyze_crash(ctx);        // 8. crash site, backtraces, symbols, mapped files
    grant_owner_access(ctx);   // 9. the crashing user may read their own crash
    return commit_record(ctx); // 10. the record, the rate-limit reservation, one log line
  } catch (const std::exception& e) {
    // Nothing above should throw (allocation failure aside); if it does, the crash still gets
    // its record when the store is open.
    return record_internal_error(ctx, e.what());
  } catch (...) {
    return record_internal_error(ctx, "an exception of unknown type");
  }
}

} // namespace handler
