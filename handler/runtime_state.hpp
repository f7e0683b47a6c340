// The pod a container belongs to, as the node's container runtime recorded it on the node's own
// file system: no network call, no runtime socket, nothing the crasher can write.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace handler {

// Where containerd keeps the OCI bundle of each running task of the CRI (Kubernetes) namespace,
// relative to the node's root: <dir>/<container id>/config.json.
inline constexpr std::string_view k_containerd_cri_tasks =
    "run/containerd/io.containerd.runtime.v2.task/k8s.io";
// The largest bundle config.json read (a seccomp profile makes them tens of KiB).
inline constexpr size_t k_runtime_config_max = 1 << 20;

// What the runtime's state says about a container. Empty fields were absent or malformed.
struct RuntimePod {
  std::string name;           // io.kubernetes.cri.sandbox-name
  std::string pod_namespace;  // io.kubernetes.cri.sandbox-namespace
  std::string uid;            // io.kubernetes.cri.sandbox-uid
  std::string container_name; // io.kubernetes.cri.container-name
  std::string error;          // why nothing was taken, when the state exists but is refused
};

// Reads containerd's bundle of `container_id` (64 hex digits, from the crasher's cgroup) under
// `root`, an fd of the node's root directory ("/" in the handler). The file must be reached
// without symbolic links, be a regular file owned by `root`'s owner and writable by nobody
// else, and hold at most k_runtime_config_max bytes; names are kept only in the form of
// Kubernetes names, and nothing when the sandbox uid differs from `cgroup_pod_uid` (when that
// is known). Absent state (not containerd, not a pod) is an empty result without error.
RuntimePod read_runtime_pod(int root, std::string_view container_id,
                            std::string_view cgroup_pod_uid);

// Adds `pod_name`, `pod_namespace` and `container_name` to the record's `container` section.
void add_runtime_pod(nlohmann::json& container, const RuntimePod& pod);

} // namespace handler
