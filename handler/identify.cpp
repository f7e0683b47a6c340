// Step 4 of the handler: the crash's identity from the arguments, and /proc while the process
// still exists.
#include "common/base/io.hpp"
#include "common/base/log.hpp"
#include "common/base/signals.hpp"
#include "common/store/names.hpp"
#include "common/store/record.hpp"
#include "handler/context.hpp"
#include "handler/procinfo.hpp"
#include "handler/runtime_report.hpp"
#include "handler/runtime_state.hpp"
#include "handler/steps.hpp"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

namespace handler {

namespace {

std::string own_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) {
    return {};
  }
  return buf;
}

// The first line of a small system file, when it has `size` characters all in `allowed`.
std::string id_file(const char* path, size_t size, std::string_view allowed) {
  auto text = common::read_file(AT_FDCWD, path, 256);
  if (!text) {
    return {};
  }
  std::string line = text->substr(0, text->find('\n'));
  if (line.size() != size || line.find_first_not_of(allowed) != std::string::npos) {
    return {};
  }
  return line;
}

// The node the handler runs on. The kernel starts it in the initial namespaces, so these are
// the host's, whatever namespaces the crasher was in (its %h is its UTS namespace's name).
nlohmann::json node_json() {
  nlohmann::json j = nlohmann::json::object();
  if (auto id = id_file("/etc/machine-id", 32, "0123456789abcdef"); !id.empty()) {
    j["machine_id"] = id;
  }
  if (auto id = id_file("/proc/sys/kernel/random/boot_id", 36, "0123456789abcdef-"); !id.empty()) {
    j["boot_id"] = id;
  }
  struct utsname u {};
  if (::uname(&u) == 0) {
    // At most 64 bytes (the kernel's own bound); made valid UTF-8 when the record is written.
    j["hostname"] = std::string(u.nodename, ::strnlen(u.nodename, sizeof u.nodename));
  }
  return j;
}

// True when the crashed process is the system logger or PID 1 (which holds journald's sockets):
// by its comm or its executable, as either may be all that is known.
bool crashed_logger(const common::Record& r) {
  constexpr std::string_view k_journald = "systemd-journald";
  return r.pid == 1 || r.comm == k_journald.substr(0, 15) ||
         r.executable.ends_with("/" + std::string(k_journald));
}

} // namespace

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
    ctx.warnings.push_back(
        "no hostname argument (%h): using the name of the host the handler runs on");
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
    } else {
      // Through the same /proc directory the facts were checked on: the same process (a
      // directory of /proc stays its task's, a pid number reused or not); after them, for the
      // process's own pid (NSpid) in the names runtimes give their reports.
      note_runtime_report_names(ctx);
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
  if (!ctx.proc.container_id.empty()) {
    // The pod's name and namespace from the node's runtime state, beside the crasher's claims.
    // The handler runs in the host's mount namespace, so "/" is the node's root.
    if (auto root = common::open_at(AT_FDCWD, "/", O_PATH | O_DIRECTORY)) {
      const RuntimePod pod = read_runtime_pod(root->get(), ctx.proc.container_id, ctx.proc.pod_uid);
      add_runtime_pod(r.container, pod);
      if (!pod.error.empty()) {
        ctx.warnings.push_back("container runtime state not used: " + pod.error);
      }
    }
  }
  r.node = node_json();
  if (a.pid && !a.pidfd) {
    // Kernels before 6.16 have no %F (and corectl install leaves -F%F out there).
    ctx.warnings.push_back("no pidfd from the kernel (%F, Linux 6.16 and later): /proc is kept "
                           "only if /proc/<pid>/exe matches the executable");
  }
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

} // namespace handler
