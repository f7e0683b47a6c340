#include "handler/procinfo.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

using handler::ProcFacts;

TEST_CASE("cgroup paths give unit, container and pod", "[procinfo]") {
  SECTION("systemd service") {
    ProcFacts f;
    handler::parse_cgroup_path(f, "/system.slice/nginx.service");
    CHECK(f.unit == "nginx.service");
    CHECK(f.container_id.empty());
  }
  SECTION("docker") {
    ProcFacts f;
    const std::string id(64, 'a');
    handler::parse_cgroup_path(f, "/system.slice/docker-" + id + ".scope");
    CHECK(f.container_id == id);
    CHECK(f.unit.empty());
  }
  SECTION("kubernetes pod") {
    ProcFacts f;
    const std::string id(64, 'b');
    handler::parse_cgroup_path(
        f, "/kubepods.slice/kubepods-burstable.slice/"
           "kubepods-burstable-pod1c2d3e4f_1111_2222_3333_444455556666.slice/cri-containerd-" +
               id + ".scope");
    CHECK(f.pod_uid == "1c2d3e4f-1111-2222-3333-444455556666");
    CHECK(f.container_id == id);
  }
  SECTION("user session") {
    ProcFacts f;
    handler::parse_cgroup_path(f, "/user.slice/user-1000.slice/session-3.scope");
    CHECK(f.unit == "session-3.scope");
  }
}

TEST_CASE("pod name and namespace claimed in the environment", "[procinfo]") {
  using namespace std::string_view_literals;
  ProcFacts f;
  handler::parse_pod_claims(f, "PATH=/bin\0POD_NAME=web-7d9f.x1\0POD_NAMESPACE=shop\0"sv);
  CHECK(f.claimed_pod_name == "web-7d9f.x1");
  CHECK(f.claimed_pod_namespace == "shop");
  const auto j = handler::container_json(f);
  CHECK(j["claimed_pod_name"] == "web-7d9f.x1");
  CHECK(j["claimed_pod_namespace"] == "shop");
  // Anything but a Kubernetes name is not kept: no control characters, no length past the API's.
  ProcFacts bad;
  handler::parse_pod_claims(bad, "POD_NAME=Web\0POD_NAMESPACE=a.b\0"sv);
  handler::parse_pod_claims(bad, "POD_NAME=x\x1b[2J\0POD_NAMESPACE=-a\0"sv);
  handler::parse_pod_claims(bad, "POD_NAME=" + std::string(254, 'a'));
  CHECK(bad.claimed_pod_name.empty());
  CHECK(bad.claimed_pod_namespace.empty());
  handler::parse_pod_claims(bad, "POD_NAME=" + std::string(253, 'a'));
  CHECK(bad.claimed_pod_name.size() == 253);
}

TEST_CASE("/proc facts of a live process, verified without a pidfd by its executable",
          "[procinfo]") {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe);
  REQUIRE(n > 0);
  const auto self = handler::CrashedProcess::open(::getpid(), std::nullopt);
  REQUIRE(self.valid());
  const auto facts =
      handler::gather_proc_facts(self, false, std::string(exe, static_cast<size_t>(n)));
  CHECK(facts.verified);
  CHECK(facts.comm.has_value());
  CHECK(facts.start_time.has_value());
  // argv[0] names this test binary.
  const std::string self_exe(exe, static_cast<size_t>(n));
  CHECK(facts.cmdline.value_or("").find(self_exe.substr(self_exe.rfind('/') + 1)) !=
        std::string::npos);

  const auto wrong = handler::gather_proc_facts(self, false, "/not/this/program");
  CHECK_FALSE(wrong.verified);
  CHECK_FALSE(wrong.comm.has_value());
}
