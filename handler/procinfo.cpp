#include "handler/procinfo.hpp"

#include "common/base/fd.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/proc_stat.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace handler {

namespace {

constexpr size_t k_cmdline_max = 4096;

std::optional<std::string> read_proc(int dir, const std::string& name, size_t limit) {
  auto text = common::read_file(dir, name, limit);
  if (!text) {
    return std::nullopt;
  }
  return std::move(*text);
}

// Start time from field 22 of /proc/<pid>/stat (clock ticks since boot) and the boot time.
std::optional<int64_t> start_time(const std::string& stat) {
  const auto field = common::stat_field(stat, 22);
  const auto ticks = field ? common::parse_number<int64_t>(*field) : std::nullopt;
  if (!ticks) {
    return std::nullopt;
  }
  struct timespec boot {};
  struct timespec now {};
  // CLOCK_BOOTTIME includes suspend, like the start time field.
  clock_gettime(CLOCK_BOOTTIME, &boot);
  clock_gettime(CLOCK_REALTIME, &now);
  const long hz = ::sysconf(_SC_CLK_TCK);
  if (hz <= 0) {
    return std::nullopt;
  }
  return static_cast<int64_t>(now.tv_sec - boot.tv_sec) + *ticks / hz;
}

} // namespace

void parse_cgroup_path(ProcFacts& facts, const std::string& cgroup) {
  facts.cgroup = cgroup;
  std::string_view rest = cgroup;
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    // systemd units: the last *.service / *.scope that is not a container runtime scope.
    if (part.ends_with(".service") ||
        (part.ends_with(".scope") && !part.starts_with("docker-") &&
         !part.starts_with("cri-containerd-") && !part.starts_with("crio-"))) {
      facts.unit = std::string(part);
    }
    // Runtimes name the container's cgroup by its 64-hex id, with a prefix and suffix that vary:
    // docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, or bare <id>.
    std::string_view id = part;
    if (id.ends_with(".scope")) {
      id.remove_suffix(6);
    }
    if (const auto dash = id.rfind('-'); dash != std::string_view::npos && id.size() > 64) {
      id = id.substr(dash + 1);
    }
    if (id.size() == 64 && common::is_hex(id)) {
      facts.container_id = std::string(id);
    }
    // kubepods-burstable-pod<uid with _>.slice or pod<uid>
    if (const auto pod = part.rfind("pod"); pod != std::string_view::npos) {
      std::string uid(part.substr(pod + 3));
      if (uid.ends_with(".slice")) {
        uid.resize(uid.size() - 6);
      }
      for (char& c : uid) {
        if (c == '_') {
          c = '-';
        }
      }
      if (uid.size() == 36 && uid[8] == '-' && uid[13] == '-') {
        facts.pod_uid = uid;
      }
    }
  }
}

bool kubernetes_name(std::string_view s, size_t max, bool dots) {
  if (s.empty() || s.size() > max || s.front() == '-' || s.back() == '-' || s.front() == '.' ||
      s.back() == '.') {
    return false;
  }
  for (const char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (dots && c == '.'))) {
      return false;
    }
  }
  return true;
}

namespace {

// The first `limit` bytes of /proc/<pid>/environ (the kernel's own bound is the process's
// argument area, which can be large): the variables asked for come early in a pod's environment.
std::optional<std::string> read_environ_prefix(int dir, size_t limit) {
  auto fd = common::open_at(dir, "environ", O_RDONLY | O_NOCTTY);
  if (!fd) {
    return std::nullopt;
  }
  std::string out(limit, '\0');
  size_t have = 0;
  while (have < limit) {
    const ssize_t n = ::read(fd->get(), out.data() + have, limit - have);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    have += static_cast<size_t>(n);
  }
  out.resize(have);
  return out;
}

// The last id of a status file's NSpid line: the id in the process's own pid namespace, the
// one it knows itself by (and names its perf map and reports after).
std::optional<int64_t> last_nspid(std::string_view status) {
  const size_t pos = status.find("\nNSpid:");
  if (pos == std::string_view::npos) {
    return std::nullopt;
  }
  const size_t end = status.find('\n', pos + 1);
  const std::string_view line =
      status.substr(pos + 7, end == std::string_view::npos ? end : end - pos - 7);
  const size_t last = line.find_last_of(" \t");
  return common::parse_number<int64_t>(line.substr(last == std::string_view::npos ? 0 : last + 1));
}

} // namespace

void parse_pod_claims(ProcFacts& facts, std::string_view environ) {
  while (!environ.empty()) {
    const size_t end = environ.find('\0');
    const std::string_view var = environ.substr(0, end);
    environ = end == std::string_view::npos ? std::string_view() : environ.substr(end + 1);
    if (var.starts_with("POD_NAME=") && kubernetes_name(var.substr(9), 253, true)) {
      facts.claimed_pod_name = std::string(var.substr(9));
    } else if (var.starts_with("POD_NAMESPACE=") && kubernetes_name(var.substr(14), 63, false)) {
      facts.claimed_pod_namespace = std::string(var.substr(14));
    }
  }
}

// Reads the tasks of the open /proc/<pid> directory `dir`: at most 256, in directory order.
static std::vector<ThreadInfo> read_threads(int dir) {
  // A process may have thousands of threads; the record keeps 64 and each costs three reads.
  constexpr size_t k_max_thread_infos = 256;
  std::vector<ThreadInfo> out;
  const auto tasks = common::open_at(dir, "task", O_RDONLY | O_DIRECTORY);
  if (!tasks) {
    return out;
  }
  // A listing that fails part-way keeps the threads read before the failure.
  (void)common::list_dir(tasks->get(), [&](std::string_view name) {
    if (out.size() >= k_max_thread_infos ||
        name.find_first_not_of("0123456789") != std::string_view::npos) {
      return;
    }
    const std::string task = "task/" + std::string(name) + "/";
    ThreadInfo t;
    t.tid = common::parse_number<int64_t>(name).value_or(0);
    if (auto comm = read_proc(dir, task + "comm", 64)) {
      if (comm->ends_with('\n')) {
        comm->pop_back();
      }
      t.name = std::move(*comm);
    }
    if (auto stat = read_proc(dir, task + "stat", 4096)) {
      if (const auto state = common::stat_field(*stat, 3)) {
        t.state = std::string(state->substr(0, 1));
      }
    }
    if (auto status = read_proc(dir, task + "status", 8192)) {
      // The core names threads by their id in the crasher's pid namespace: the last NSpid.
      if (auto tid = last_nspid(*status)) {
        t.tid = *tid;
      }
    }
    out.push_back(std::move(t));
  });
  return out;
}

ProcFacts gather_proc_facts(const CrashedProcess& process, bool kernel_pidfd,
                            const std::string& expected_exe) {
  ProcFacts facts;
  if (!process.valid()) {
    return facts;
  }
  const int64_t pid = process.pid();
  const int dir = process.proc_dir();
  facts.comm = read_proc(dir, "comm", 64);
  if (facts.comm && facts.comm->ends_with('\n')) {
    facts.comm->pop_back();
  }
  if (auto raw = read_proc(dir, "cmdline", 1 << 20)) {
    raw->resize(std::min(raw->size(), k_cmdline_max));
    while (!raw->empty() && raw->back() == '\0') {
      raw->pop_back();
    }
    for (char& c : *raw) {
      if (c == '\0') {
        c = ' ';
      }
    }
    facts.cmdline = std::move(*raw);
  }
  char link[4096];
  const ssize_t n = ::readlinkat(dir, "exe", link, sizeof link);
  if (n > 0 && static_cast<size_t>(n) < sizeof link) { // a full buffer may be cut short
    facts.exe = std::string(link, static_cast<size_t>(n));
  }
  if (auto stat = read_proc(dir, "stat", 4096)) {
    facts.start_time = start_time(*stat);
  }
  if (auto status = read_proc(dir, "status", 8192)) {
    facts.ns_pid = last_nspid(*status);
  }
  facts.threads = read_threads(dir);
  if (auto cg = read_proc(dir, "cgroup", 65536)) {
    // cgroup v2: a single "0::/path" line; on hybrid hosts take the 0:: line.
    const auto pos = cg->find("0::");
    if (pos != std::string::npos) {
      std::string path = cg->substr(pos + 3);
      path = path.substr(0, path.find('\n'));
      parse_cgroup_path(facts, path);
    }
  }
  if (!facts.pod_uid.empty()) {
    // Only in a pod, and only two names out of it: the rest of the environment (secrets among
    // it) is never kept.
    if (auto env = read_environ_prefix(dir, 64 << 10)) {
      parse_pod_claims(facts, *env);
    }
  }
  if (kernel_pidfd) {
    // Reading /proc/<pid> proves nothing on its own: the pid may have been reused meanwhile.
    // The pidfd pins the original process; if it is still alive and still has that pid, what
    // we read was about it.
    facts.verified = process.still_the_same();
    if (!facts.verified) {
      facts.warnings.push_back("process " + std::to_string(pid) +
                               " exited while /proc was read: /proc data discarded");
    }
  } else {
    std::string exe = facts.exe.value_or("");
    if (exe.ends_with(" (deleted)")) {
      exe.resize(exe.size() - 10);
    }
    facts.verified = !expected_exe.empty() && exe == expected_exe;
    if (!facts.verified && facts.exe) {
      facts.warnings.push_back("/proc/" + std::to_string(pid) +
                               "/exe does not match the executable: /proc data discarded");
    }
  }
  if (!facts.verified) {
    ProcFacts empty;
    empty.warnings = std::move(facts.warnings);
    return empty;
  }
  return facts;
}

nlohmann::json container_json(const ProcFacts& facts) {
  nlohmann::json j = nlohmann::json::object();
  if (!facts.cgroup.empty()) {
    j["cgroup"] = facts.cgroup;
  }
  if (!facts.unit.empty()) {
    j["unit"] = facts.unit;
  }
  if (!facts.container_id.empty()) {
    j["container_id"] = facts.container_id;
  }
  if (!facts.pod_uid.empty()) {
    j["pod_uid"] = facts.pod_uid;
  }
  if (!facts.claimed_pod_name.empty()) {
    j["claimed_pod_name"] = facts.claimed_pod_name;
  }
  if (!facts.claimed_pod_namespace.empty()) {
    j["claimed_pod_namespace"] = facts.claimed_pod_namespace;
  }
  return j;
}

} // namespace handler
