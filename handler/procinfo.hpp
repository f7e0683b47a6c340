// Facts about the crashed process that only /proc has, read while it still exists.
#pragma once

#include "common/base/fd.hpp"
#include "handler/crashed_process.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace handler {

// One thread from /proc/<pid>/task/<tid>.
struct ThreadInfo {
  int64_t tid = 0;   // in the crasher's own pid namespace (last NSpid), as in its core
  std::string name;  // comm (raw bytes, at most 16)
  std::string state; // the state letter of stat ("R", "S", "D", "t" …)
};

struct ProcFacts {
  bool verified = false;              // read through a pidfd that still named the process after
  std::optional<std::string> comm;    // /proc/<pid>/comm
  std::optional<std::string> cmdline; // NULs as spaces, bounded
  std::optional<std::string> exe;     // readlink /proc/<pid>/exe
  std::optional<int64_t> start_time;  // process start, seconds since the epoch
  std::optional<int64_t> ns_pid;      // its pid in its own pid namespace (the last NSpid)
  std::string cgroup;                 // the unified (v2) cgroup path
  std::string unit;                   // systemd unit from the cgroup path, if any
  std::string container_id;           // 64-hex container id from the cgroup path, if any
  std::string pod_uid;                // kubernetes pod UID from the cgroup path, if any
  // In a pod only: POD_NAME and POD_NAMESPACE from /proc/<pid>/environ (the downward API's
  // usual names). The crasher's own claim, not the kubelet's: checked only for the form of a
  // Kubernetes name.
  std::string claimed_pod_name;
  std::string claimed_pod_namespace;
  std::vector<ThreadInfo> threads;   // the first k_max_thread_infos tasks
  std::vector<std::string> warnings; // what could not be read and why
};

// Reads /proc/<pid> through the handle. With the kernel's pidfd (`kernel_pidfd`) the data is
// kept only if the pidfd shows, after reading, that <pid> is still the same process (the
// pid-reuse race of CVE-2025-4598); without one, only if /proc/<pid>/exe matches `expected_exe`
// (best effort).
ProcFacts gather_proc_facts(const CrashedProcess& process, bool kernel_pidfd,
                            const std::string& expected_exe);

// Derives unit, container id and pod uid from a cgroup path (exposed for tests).
void parse_cgroup_path(ProcFacts& facts, const std::string& cgroup);

// True when `s` has the form of a Kubernetes object name of at most `max` characters: lower-case
// letters, digits, '-' (and '.' in a DNS subdomain, `dots`), starting and ending with a letter
// or digit.
bool kubernetes_name(std::string_view s, size_t max, bool dots);

// Takes POD_NAME and POD_NAMESPACE from an environ block (NUL-separated NAME=value) when they
// are Kubernetes names: a DNS subdomain of at most 253 characters, a label of at most 63.
void parse_pod_claims(ProcFacts& facts, std::string_view environ);

// The `container` section of the record.
nlohmann::json container_json(const ProcFacts& facts);

} // namespace handler
