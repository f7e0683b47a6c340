#include "handler/runtime_state.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

using handler::read_runtime_pod;
using handler::RuntimePod;

namespace {

const std::string k_id = "3f5a0c7e9b1d2468ace0fdb97531eca86420bdf97531eca86420bdf97531eca8";
const std::string k_uid = "5e1c8a2b-3d4f-4a6b-8c9d-0e1f2a3b4c5d";

// An OCI runtime spec as containerd's CRI plugin writes it for a pod's container (abridged: the
// real one also holds process, mounts, linux with its seccomp profile…).
std::string bundle_config(const std::string& uid, const std::string& name = "web-7d9f8c-x2k4q",
                          const std::string& ns = "shop") {
  return R"({"ociVersion":"1.1.0","process":{"args":["/app/server"],"cwd":"/"},)"
         R"("root":{"path":"rootfs"},"hostname":"",)"
         R"("annotations":{"io.kubernetes.cri.container-type":"container",)"
         R"("io.kubernetes.cri.container-name":"server",)"
         R"("io.kubernetes.cri.image-name":"registry.example/shop/server:1.4",)"
         R"("io.kubernetes.cri.sandbox-id":")" +
         std::string(64, 'a') +
         R"(",)"
         R"("io.kubernetes.cri.sandbox-name":")" +
         name + R"(","io.kubernetes.cri.sandbox-namespace":")" + ns +
         R"(","io.kubernetes.cri.sandbox-uid":")" + uid + R"("}})";
}

// A node's root with containerd's state for container k_id laid out as containerd lays it out.
struct Node {
  test::TempDir dir;
  std::filesystem::path bundle =
      dir.path() / "run/containerd/io.containerd.runtime.v2.task/k8s.io" / k_id;
  int root = -1;

  explicit Node(const std::string& config) {
    std::filesystem::create_directories(bundle);
    std::ofstream(bundle / "config.json") << config;
    ::chmod((bundle / "config.json").c_str(), 0644);
    root = ::open(dir.str().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  ~Node() { ::close(root); }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
};

} // namespace

TEST_CASE("the pod's name and namespace come from containerd's bundle of the container",
          "[runtime_state]") {
  Node node(bundle_config(k_uid));
  const RuntimePod pod = read_runtime_pod(node.root, k_id, k_uid);
  CHECK(pod.error.empty());
  CHECK(pod.name == "web-7d9f8c-x2k4q");
  CHECK(pod.pod_namespace == "shop");
  CHECK(pod.container_name == "server");
  CHECK(pod.uid == k_uid);

  nlohmann::json container = {{"claimed_pod_name", "other"}};
  handler::add_runtime_pod(container, pod);
  CHECK(container["pod_name"] == "web-7d9f8c-x2k4q");
  CHECK(container["pod_namespace"] == "shop");
  CHECK(container["container_name"] == "server");
  CHECK(container["claimed_pod_name"] == "other"); // the claim stays beside, under its own name

  SECTION("without a pod uid from the cgroup the names are still taken") {
    CHECK(read_runtime_pod(node.root, k_id, "").name == "web-7d9f8c-x2k4q");
  }
}

TEST_CASE("no runtime state is no pod and no error", "[runtime_state]") {
  Node node(bundle_config(k_uid));
  const std::string other(64, 'b');
  const RuntimePod pod = read_runtime_pod(node.root, other, k_uid);
  CHECK(pod.name.empty());
  CHECK(pod.error.empty());
  // Not a container id: never becomes a path.
  CHECK(read_runtime_pod(node.root, "../../../../etc/passwd", "").name.empty());
  CHECK(read_runtime_pod(node.root, "", "").error.empty());

  SECTION("a spec without the CRI plugin's annotations (ctr, docker) names no pod") {
    Node plain(R"({"ociVersion":"1.1.0","root":{"path":"rootfs"}})");
    const RuntimePod p = read_runtime_pod(plain.root, k_id, "");
    CHECK(p.name.empty());
    CHECK(p.error.empty());
  }
}

TEST_CASE("runtime state that is not the runtime's own is refused", "[runtime_state]") {
  SECTION("another pod's uid") {
    Node node(bundle_config("00000000-1111-2222-3333-444444444444"));
    const RuntimePod pod = read_runtime_pod(node.root, k_id, k_uid);
    CHECK(pod.name.empty());
    CHECK(pod.pod_namespace.empty());
    CHECK(pod.error.find("is not the cgroup's pod uid") != std::string::npos);
  }
  SECTION("a config.json others may write") {
    Node node(bundle_config(k_uid));
    ::chmod((node.bundle / "config.json").c_str(), 0666);
    const RuntimePod pod = read_runtime_pod(node.root, k_id, k_uid);
    CHECK(pod.name.empty());
    CHECK(pod.error.find("owned and written") != std::string::npos);
  }
  SECTION("a symbolic link in place of the file or of a directory") {
    Node node(bundle_config(k_uid));
    const auto real = node.dir.path() / "elsewhere.json";
    std::filesystem::rename(node.bundle / "config.json", real);
    std::filesystem::create_symlink(real, node.bundle / "config.json");
    CHECK(read_runtime_pod(node.root, k_id, k_uid).name.empty());
    CHECK_FALSE(read_runtime_pod(node.root, k_id, k_uid).error.empty());

    Node linked(bundle_config(k_uid));
    const auto tasks = linked.dir.path() / "run/containerd/io.containerd.runtime.v2.task";
    std::filesystem::rename(tasks / "k8s.io", linked.dir.path() / "k8s.io");
    std::filesystem::create_directory_symlink(linked.dir.path() / "k8s.io", tasks / "k8s.io");
    CHECK(read_runtime_pod(linked.root, k_id, k_uid).name.empty());
  }
  SECTION("a FIFO in place of the file is not waited on") {
    Node node(bundle_config(k_uid));
    std::filesystem::remove(node.bundle / "config.json");
    REQUIRE(::mkfifo((node.bundle / "config.json").c_str(), 0600) == 0);
    const RuntimePod pod = read_runtime_pod(node.root, k_id, k_uid);
    CHECK(pod.name.empty());
    CHECK_FALSE(pod.error.empty());
  }
  SECTION("a file larger than the bound is not read") {
    Node node(bundle_config(k_uid) + std::string(handler::k_runtime_config_max, ' '));
    const RuntimePod pod = read_runtime_pod(node.root, k_id, k_uid);
    CHECK(pod.name.empty());
    CHECK(pod.error.find("larger than") != std::string::npos);
  }
  SECTION("not JSON") {
    Node node("{\"annotations\": ");
    CHECK(read_runtime_pod(node.root, k_id, k_uid).error.find("not a JSON object") !=
          std::string::npos);
  }
  SECTION("names that are not Kubernetes names are left out") {
    Node node(bundle_config(k_uid, "Web_Server", std::string(64, 'n')));
    const RuntimePod pod = read_runtime_pod(node.root, k_id, k_uid);
    CHECK(pod.name.empty());
    CHECK(pod.pod_namespace.empty());
    CHECK(pod.container_name == "server");
  }
}
