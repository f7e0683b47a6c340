#include "common/base/io.hpp"
#include "common/store/store.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

using namespace common;

TEST_CASE("store layout: safe components only, records listed, foreign files skipped", "[store]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  CHECK_FALSE(store->open_exe_dir("..", "x"));
  CHECK_FALSE(store->open_exe_dir("h", "a/b"));
  CHECK_FALSE(store->open_exe_dir(".hidden", "x"));
  auto exe = store->open_exe_dir("web01", "usr!bin!ruby");
  REQUIRE(exe);
  test::spit(dir.path() / "web01/usr!bin!ruby/0123456789abcdef.json", "{}");
  test::spit(dir.path() / "web01/usr!bin!ruby/0123456789abcdef.core.zst", "z");
  test::spit(dir.path() / "web01/usr!bin!ruby/fedcba9876543210.json", "{}");
  test::spit(dir.path() / "web01/usr!bin!ruby/.#tmp.json.abc", "partial");
  test::spit(dir.path() / ".ledger.json", "{}");
  std::set<std::string> seen;
  size_t with_core = 0;
  const auto failures = store->for_each_record([&](const StoreEntry& e) {
    seen.insert(e.host + "/" + e.exe + "/" + e.id);
    with_core += e.has_core ? 1 : 0;
  });
  REQUIRE(failures);
  CHECK(*failures == 0);
  CHECK(seen == std::set<std::string>{"web01/usr!bin!ruby/0123456789abcdef",
                                      "web01/usr!bin!ruby/fedcba9876543210"});
  CHECK(with_core == 1);
  CHECK(is_record_id(new_record_id()));
  CHECK_FALSE(is_record_id("../etc/passwd"));
}

namespace {

// A store holding one 100000-byte core under h/e.
struct StoreWithCore {
  test::TempDir dir;
  Expected<Store> store = Store::open(dir.str());

  StoreWithCore() {
    REQUIRE(store);
    REQUIRE(store->open_exe_dir("h", "e"));
    test::spit(dir.path() / "h/e/0123456789abcdef.core.zst", std::string(100000, 'x'));
  }
};

} // namespace

TEST_CASE("usage estimate: walked when stale, incremented by writers", "[store]") {
  StoreWithCore s;
  auto& [dir, store] = s;
  const uint64_t walked = store->usage_estimate(300);
  CHECK(walked >= 100000);
  CHECK(walked == store->disk_usage());

  // A new core is added by its writer; the estimate does not walk again while fresh.
  test::spit(dir.path() / "h/e/fedcba9876543210.core.zst", std::string(50000, 'y'));
  store->add_usage(50000);
  CHECK(store->usage_estimate(300) == walked + 50000);

  // Stale (or with max_age 0): walked again, exact.
  CHECK(store->usage_estimate(0) == store->disk_usage());

  // A corrupt or foreign usage file means "walk".
  test::spit(dir.path() / ".usage", "garbage");
  CHECK(store->usage_estimate(300) == store->disk_usage());
}

TEST_CASE("the usage file is parsed strictly", "[store]") {
  const auto v = common::parse_usage("123 456\n");
  REQUIRE(v);
  CHECK(v->bytes == 123);
  CHECK(v->walked == 456);
  CHECK(common::parse_usage("18446744073709551615 0"));
  for (const char* bad : {"-1 0", "1 -5", " 1 2", "1  2", "1 2 3", "1", "", "1 2\n\n", "0x10 1",
                          "18446744073709551616 0", "+1 2"}) {
    CHECK_FALSE(common::parse_usage(bad));
  }
}

TEST_CASE("usage estimate never waits on a lock someone else holds", "[store]") {
  StoreWithCore s;
  auto& [dir, store] = s;
  const uint64_t walked = store->usage_estimate(300);
  // The store user (or a compromised exporter) holds the usage file's lock for ever.
  auto holder = open_at(AT_FDCWD, dir.path() / ".usage", O_RDONLY);
  REQUIRE(holder);
  REQUIRE(::flock(holder->get(), LOCK_SH) == 0);
  const auto start = std::chrono::steady_clock::now();
  // Fresh: the value is read without the lock.
  CHECK(store->usage_estimate(300) == walked);
  // An update cannot be written without the lock: it is dropped, not waited for.
  store->add_usage(50000);
  CHECK(store->usage_estimate(300) == walked);
  // Stale: walked, not written.
  CHECK(store->usage_estimate(0) == store->disk_usage());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  ::flock(holder->get(), LOCK_UN);
  store->add_usage(50000);
  CHECK(store->usage_estimate(300) == walked + 50000);
}

TEST_CASE("list_dir: hidden names on request, a failing readdir is an error", "[store]") {
  test::TempDir dir;
  test::spit(dir.path() / "a", "");
  test::spit(dir.path() / ".hidden", "");
  const UniqueFd fd(::open(dir.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(fd);
  std::set<std::string> names;
  REQUIRE(list_dir(fd.get(), [&](std::string_view n) { names.emplace(n); }));
  CHECK(names == std::set<std::string>{"a"});
  names.clear();
  REQUIRE(list_dir(
      fd.get(), [&](std::string_view n) { names.emplace(n); }, Hidden::include));
  CHECK(names == std::set<std::string>{".hidden", "a"});

  const UniqueFd gone(test::reaped_proc_dir());
  REQUIRE(gone);
  size_t seen = 0;
  const auto listed = list_dir(gone.get(), [&](std::string_view) { ++seen; });
  REQUIRE_FALSE(listed);
  CHECK(listed.error().sys_errno == ENOENT);
  CHECK(seen == 0);
}

TEST_CASE("the store walk: links never followed, foreign names reported, scopes", "[store]") {
  test::TempDir dir;
  auto store = Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(store->open_exe_dir("h1", "e1"));
  REQUIRE(store->open_exe_dir("h1", "e2"));
  REQUIRE(store->open_exe_dir("h2", "e1"));
  test::spit(dir.path() / "h1/stray", "a file where a directory belongs");
  std::filesystem::create_directory_symlink(dir.path() / "h2/e1", dir.path() / "h1/linked");
  std::filesystem::create_directory_symlink(dir.path() / "h2", dir.path() / "lh");
  std::filesystem::create_directory(dir.path() / "not ours");
  test::spit(dir.path() / ".ledger.json", "{}");

  auto run = [&](const Store::WalkScope& scope) {
    std::set<std::string> visited;
    std::map<std::string, int> foreign;
    std::vector<std::string> failed;
    std::set<std::string> hosts_opened;
    Store::WalkEvents events;
    events.host_opened = [&](std::string_view h) { hosts_opened.emplace(h); };
    events.foreign = [&](std::string_view rel, int err) { foreign[std::string(rel)] = err; };
    events.failed = [&](std::string_view rel, const Error&) { failed.emplace_back(rel); };
    auto walked = store->walk(scope, events, [&](std::string_view h, std::string_view e, int fd) {
      struct stat st {};
      CHECK(::fstat(fd, &st) == 0);
      CHECK(S_ISDIR(st.st_mode));
      visited.insert(std::string(h) + "/" + std::string(e));
    });
    REQUIRE(walked);
    CHECK(*walked == failed.size());
    CHECK(failed.empty());
    return std::tuple(visited, foreign, hosts_opened);
  };

  SECTION("the whole store") {
    const auto [visited, foreign, hosts] = run({});
    CHECK(visited == std::set<std::string>{"h1/e1", "h1/e2", "h2/e1"});
    CHECK(foreign ==
          std::map<std::string, int>{
              {"h1/linked", ELOOP}, {"h1/stray", ENOTDIR}, {"lh", ELOOP}, {"not ours", 0}});
    CHECK(hosts == std::set<std::string>{"h1", "h2"});
  }
  SECTION("every directory, names the handler does not write included") {
    const auto [visited, foreign, hosts] = run({Store::Listing::all, {}, {}});
    CHECK(visited.size() == 3);
    CHECK(hosts.contains("not ours"));
  }
  SECTION("one executable under every host, opened by name") {
    const auto [visited, foreign, hosts] = run({Store::Listing::ours, {}, "e1"});
    CHECK(visited == std::set<std::string>{"h1/e1", "h2/e1"});
    CHECK(hosts.empty()); // no host is listed
  }
  SECTION("one host; one directory; one that is a link") {
    CHECK(std::get<0>(run({Store::Listing::ours, "h1", {}})) ==
          std::set<std::string>{"h1/e1", "h1/e2"});
    CHECK(std::get<0>(run({Store::Listing::ours, "h1", "e2"})) == std::set<std::string>{"h1/e2"});
    const auto [visited, foreign, hosts] = run({Store::Listing::ours, "lh", "e1"});
    CHECK(visited.empty());
    CHECK(foreign == std::map<std::string, int>{{"lh", ELOOP}});
    CHECK(std::get<0>(run({Store::Listing::ours, "gone", {}})).empty()); // ENOENT: nothing
    CHECK(std::get<0>(run({Store::Listing::all, "..", {}})).empty());
    CHECK(std::get<0>(run({Store::Listing::all, {}, "../h1/e1"})).empty());
  }
}

TEST_CASE("the store walk reports what it may not read, with errno", "[store]") {
  test::TempDir dir;
  REQUIRE(::chmod(dir.str().c_str(), 0755) == 0);
  auto store = Store::open(dir.str());
  REQUIRE(store);
  REQUIRE(store->open_exe_dir("h1", "e1"));
  REQUIRE(store->open_exe_dir("h2", "e1"));
  REQUIRE(store->open_exe_dir("h3", "e1"));
  for (const char* d : {"", "/h1", "/h1/e1", "/h2", "/h2/e1", "/h3", "/h3/e1"}) {
    REQUIRE(::chmod((dir.str() + d).c_str(), 0755) == 0);
  }
  REQUIRE(::chmod((dir.str() + "/h2").c_str(), 0) == 0);    // may not open the host
  REQUIRE(::chmod((dir.str() + "/h3/e1").c_str(), 0) == 0); // may not open the executable
  // Root reads anything: the walk runs in a child that has become an ordinary user.
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::geteuid() == 0 &&
        (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
         ::setresuid(65534, 65534, 65534) != 0)) {
      ::_exit(10);
    }
    auto reopened = Store::open(dir.str());
    if (!reopened) {
      ::_exit(11);
    }
    std::map<std::string, int> failed;
    Store::WalkEvents events;
    events.failed = [&](std::string_view rel, const Error& e) {
      failed[std::string(rel)] = e.sys_errno;
    };
    std::set<std::string> visited;
    auto walked = reopened->walk({}, events, [&](std::string_view h, std::string_view e, int) {
      visited.insert(std::string(h) + "/" + std::string(e));
    });
    const bool ok = walked && *walked == 2 &&
                    failed == std::map<std::string, int>{{"h2", EACCES}, {"h3/e1", EACCES}} &&
                    visited == std::set<std::string>{"h1/e1"};
    ::_exit(ok ? 0 : 12);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE(::chmod((dir.str() + "/h2").c_str(), 0755) == 0);
  REQUIRE(::chmod((dir.str() + "/h3/e1").c_str(), 0755) == 0);
}

TEST_CASE("a store root whose listing fails is an error, not an empty store", "[store]") {
  const UniqueFd gone(test::reaped_proc_dir());
  REQUIRE(gone);
  auto store = Store::open("/proc/self/fd/" + std::to_string(gone.get()));
  REQUIRE(store);
  size_t visited = 0;
  auto walked = store->walk({}, {}, [&](std::string_view, std::string_view, int) { ++visited; });
  REQUIRE_FALSE(walked);
  CHECK(walked.error().sys_errno == ENOENT);
  auto records = store->for_each_record([&](const StoreEntry&) { ++visited; });
  REQUIRE_FALSE(records);
  CHECK(visited == 0);
}
