#include "handler/runtime_state.hpp"

#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "handler/procinfo.hpp"

#include <fcntl.h>
#include <sys/stat.h>

namespace handler {

namespace {

// containerd's CRI plugin writes these annotations into every container's OCI spec
// (containerd pkg/cri/annotations): the pod sandbox's name, namespace and uid as the kubelet
// gave them in the CRI call, and the container's name in the pod spec.
constexpr const char* k_sandbox_name = "io.kubernetes.cri.sandbox-name";
constexpr const char* k_sandbox_namespace = "io.kubernetes.cri.sandbox-namespace";
constexpr const char* k_sandbox_uid = "io.kubernetes.cri.sandbox-uid";
constexpr const char* k_container_name = "io.kubernetes.cri.container-name";

std::string annotation(const nlohmann::json& annotations, const char* key) {
  const auto it = annotations.find(key);
  return it != annotations.end() && it->is_string() ? it->get<std::string>() : std::string();
}

} // namespace

RuntimePod read_runtime_pod(int root, std::string_view container_id,
                            std::string_view cgroup_pod_uid) {
  RuntimePod pod;
  if (container_id.size() != 64 || !common::is_hex(container_id)) {
    return pod;
  }
  struct stat root_st {};
  if (::fstat(root, &root_st) != 0) {
    return pod;
  }
  const std::string path =
      std::string(k_containerd_cri_tasks) + "/" + std::string(container_id) + "/config.json";
  // O_NOFOLLOW under a real dirfd: no component may be a link, nor leave `root` (open_at).
  // O_NONBLOCK: a FIFO in its place is refused below, never waited on.
  auto fd = common::open_at(root, path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().sys_errno != ENOENT && fd.error().sys_errno != ENOTDIR) {
      pod.error = fd.error().message;
    }
    return pod;
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    pod.error = "'/" + path + "' is not a regular file";
    return pod;
  }
  // The runtime (root) writes it; anything another user could have written is not the node's.
  if (st.st_uid != root_st.st_uid || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    pod.error = "'/" + path + "' is not owned and written by the root directory's owner only";
    return pod;
  }
  if (static_cast<uint64_t>(st.st_size) > k_runtime_config_max) {
    pod.error = "'/" + path + "' is larger than " + std::to_string(k_runtime_config_max) + " bytes";
    return pod;
  }
  auto text = common::read_fd(fd->get(), "/" + path, k_runtime_config_max);
  if (!text) {
    pod.error = text.error().message;
    return pod;
  }
  const auto spec = nlohmann::json::parse(*text, nullptr, false);
  if (!spec.is_object()) {
    pod.error = "'/" + path + "' is not a JSON object";
    return pod;
  }
  const auto annotations = spec.find("annotations");
  if (annotations == spec.end() || !annotations->is_object()) {
    return pod; // not created by the CRI plugin: no pod
  }
  const std::string uid = annotation(*annotations, k_sandbox_uid);
  if (!cgroup_pod_uid.empty() && !uid.empty() && uid != cgroup_pod_uid) {
    // The bundle of another pod's container (the cgroup was named by another runtime?): the
    // names would be wrong, so none are taken.
    pod.error = "the runtime's sandbox uid " + common::quoted(uid.substr(0, 64)) +
                " is not the cgroup's pod uid " + common::quoted(std::string(cgroup_pod_uid));
    return pod;
  }
  pod.uid = uid.size() <= 64 ? uid : std::string();
  if (const auto name = annotation(*annotations, k_sandbox_name);
      kubernetes_name(name, 253, true)) {
    pod.name = name;
  }
  if (const auto ns = annotation(*annotations, k_sandbox_namespace);
      kubernetes_name(ns, 63, false)) {
    pod.pod_namespace = ns;
  }
  if (const auto c = annotation(*annotations, k_container_name); kubernetes_name(c, 63, false)) {
    pod.container_name = c;
  }
  return pod;
}

void add_runtime_pod(nlohmann::json& container, const RuntimePod& pod) {
  if (!pod.name.empty()) {
    container["pod_name"] = pod.name;
  }
  if (!pod.pod_namespace.empty()) {
    container["pod_namespace"] = pod.pod_namespace;
  }
  if (!pod.container_name.empty()) {
    container["container_name"] = pod.container_name;
  }
}

} // namespace handler
