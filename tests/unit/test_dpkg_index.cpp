#include "common/packages/dpkg_index.hpp"
#include "common/packages/owner_json.hpp"
#include "common/packages/ownership.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>

using namespace common;
namespace fs = std::filesystem;

namespace {

// A crashed root with a dpkg database, and a store directory for its index.
struct Db {
  test::TempDir dir;
  UniqueFd fd;

  Db() {
    fs::create_directories(dir.path() / "var/lib/dpkg/info");
    test::spit(dir.path() / "var/lib/dpkg/status", "");
    fd = UniqueFd(::open(dir.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  std::map<std::string, std::string> paragraphs;

  // Adds (or replaces) a package, as dpkg does: the status file and the list renamed into place.
  void package(const std::string& list, const std::string& version, const std::string& lines) {
    const std::string name = list.substr(0, list.find(':'));
    paragraphs[name] = "Package: " + name +
                       "\nStatus: install ok installed\nArchitecture: amd64\nVersion: " + version +
                       "\n\n";
    std::string text;
    for (const auto& p : paragraphs) {
      text += p.second;
    }
    const fs::path status = dir.path() / "var/lib/dpkg/status";
    test::spit(dir.path() / "var/lib/dpkg/status-new", text);
    fs::rename(dir.path() / "var/lib/dpkg/status-new", status);
    const std::string& name_list = list;
    const fs::path file = dir.path() / "var/lib/dpkg/info" / (name_list + ".list");
    test::spit(file.string() + "-new", lines);
    fs::rename(file.string() + "-new", file);
  }
  std::string version_of(const Ownership& o, const std::string& path) const {
    for (const auto& w : o.owners) {
      if (w.path == path) {
        return w.package + " " + w.version;
      }
    }
    return "-";
  }
};

struct IndexDir {
  test::TempDir store;
  UniqueFd store_fd{::open(store.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  UniqueFd fd;

  IndexDir() {
    auto d = open_dpkg_index_dir(store_fd.get());
    REQUIRE(d);
    fd = std::move(*d);
  }
  size_t count() const {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(store.path() / k_dpkg_index_dir)) {
      n += e.path().extension() == ".idx";
    }
    return n;
  }
  fs::path only() const {
    for (const auto& e : fs::directory_iterator(store.path() / k_dpkg_index_dir)) {
      return e.path();
    }
    return {};
  }
};

DpkgIndex sample() {
  DpkgIndex index;
  const uint32_t libc = index.add_package({"libc6", "2.36-9", "amd64"});
  const uint32_t crashy = index.add_package({"libcrashy1", "1.0-1", "amd64"});
  CHECK(index.add_path("/lib/x86_64-linux-gnu/libc.so.6", libc));
  CHECK(index.add_path("/lib/x86_64-linux-gnu", libc));
  CHECK(index.add_path("/lib/x86_64-linux-gnu", crashy)); // the first list keeps it
  CHECK(index.add_path("/lib/libcrashy.so.1", crashy));
  index.finish();
  return index;
}

} // namespace

TEST_CASE("an index keeps paths, packages and the first owner", "[dpkg_index]") {
  const DpkgIndex index = sample();
  CHECK(index.size() == 3);
  REQUIRE(index.find("/lib/libcrashy.so.1"));
  CHECK(index.find("/lib/libcrashy.so.1")->version == "1.0-1");
  CHECK(index.find("/lib/x86_64-linux-gnu")->name == "libc6");
  CHECK_FALSE(index.find("/lib/other.so"));

  const std::string bytes = index.serialize("state A");
  auto back = DpkgIndex::parse(bytes, "state A");
  REQUIRE(back);
  CHECK(back->size() == 3);
  CHECK(back->find("/lib/x86_64-linux-gnu/libc.so.6")->arch == "amd64");
  CHECK(back->find("/lib/libcrashy.so.1")->name == "libcrashy1");

  SECTION("another state is stale") {
    auto other = DpkgIndex::parse(bytes, "state B");
    REQUIRE_FALSE(other);
    CHECK(other.error().sys_errno == ESTALE);
  }
  SECTION("every flipped byte and every truncation is caught") {
    for (size_t i = 0; i < bytes.size(); ++i) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ 0x20);
      CHECK_FALSE(DpkgIndex::parse(bad, "state A"));
      CHECK_FALSE(DpkgIndex::parse(std::string_view(bytes).substr(0, i), "state A"));
    }
    CHECK_FALSE(DpkgIndex::parse(bytes + "x", "state A"));
  }
}

TEST_CASE("the lookup keeps an index per database state and root", "[dpkg_index]") {
  Db db;
  IndexDir cache;
  db.package("libc6:amd64", "2.36-9", "/.\n/lib\n/lib/x86_64-linux-gnu/libc.so.6\n");
  db.package("libcrashy1", "1.0-1", "/usr/lib/libcrashy.so.1\n");
  const std::vector<std::string> paths = {"/usr/lib/x86_64-linux-gnu/libc.so.6",
                                          "/usr/lib/libcrashy.so.1", "/opt/mine.so"};
  const auto cold = find_owners(db.fd.get(), paths, {}, cache.fd.get());
  CHECK(cold.dpkg_index == "built");
  CHECK(db.version_of(cold, paths[0]) == "libc6 2.36-9");
  CHECK(db.version_of(cold, paths[1]) == "libcrashy1 1.0-1");
  CHECK(cold.unowned == std::vector<std::string>{"/opt/mine.so"});
  CHECK(cache.count() == 1);
  CHECK(to_json(cold)["dpkg_index"] == "built");

  const auto warm = find_owners(db.fd.get(), paths, {}, cache.fd.get());
  CHECK(warm.dpkg_index == "used");
  CHECK(db.version_of(warm, paths[0]) == "libc6 2.36-9");
  CHECK(db.version_of(warm, paths[1]) == "libcrashy1 1.0-1");
  CHECK(warm.unowned == cold.unowned);
  CHECK(warm.complete);

  SECTION("an upgrade gives another state and a new index") {
    db.package("libcrashy1", "2.0-1", "/usr/lib/libcrashy.so.1\n");
    const auto after = find_owners(db.fd.get(), paths, {}, cache.fd.get());
    CHECK(after.dpkg_index == "built");
    CHECK(db.version_of(after, paths[1]) == "libcrashy1 2.0-1");
  }
  SECTION("a package removed: its list gone") {
    fs::remove(db.dir.path() / "var/lib/dpkg/info/libcrashy1.list");
    const auto after = find_owners(db.fd.get(), paths, {}, cache.fd.get());
    CHECK(after.dpkg_index == "built");
    CHECK(db.version_of(after, paths[1]) == "-");
  }
  SECTION("a damaged index is not believed, and rebuilt") {
    const fs::path file = cache.only();
    std::string bytes = test::slurp(file);
    bytes[bytes.size() - 1] ^= 1;
    test::spit(file, bytes);
    const auto after = find_owners(db.fd.get(), paths, {}, cache.fd.get());
    CHECK(after.dpkg_index == "built");
    CHECK(after.note.find("checksum mismatch") != std::string::npos);
    CHECK(db.version_of(after, paths[1]) == "libcrashy1 1.0-1");
    CHECK(find_owners(db.fd.get(), paths, {}, cache.fd.get()).dpkg_index == "used");
  }
  SECTION("an index someone else could have written is not believed") {
    const fs::path file = cache.only();
    ::chmod(file.c_str(), 0666);
    const auto after = find_owners(db.fd.get(), paths, {}, cache.fd.get());
    CHECK(after.note.find("not an index the handler wrote") != std::string::npos);
    CHECK(db.version_of(after, paths[1]) == "libcrashy1 1.0-1");
  }
  SECTION("a container's root with the same paths has its own index") {
    Db container;
    container.package("libcrashy1", "9.9-container", "/usr/lib/libcrashy.so.1\n");
    const auto c = find_owners(container.fd.get(), paths, {}, cache.fd.get());
    CHECK(c.dpkg_index == "built");
    CHECK(db.version_of(c, paths[1]) == "libcrashy1 9.9-container");
    CHECK(db.version_of(c, paths[0]) == "-");
    CHECK(cache.count() == 2);
    const auto host = find_owners(db.fd.get(), paths, {}, cache.fd.get());
    CHECK(host.dpkg_index == "used");
    CHECK(db.version_of(host, paths[1]) == "libcrashy1 1.0-1");
  }
  SECTION("the least recently used indexes go beyond the bound") {
    std::vector<std::unique_ptr<Db>> roots;
    for (size_t i = 0; i < k_max_dpkg_indexes + 3; ++i) {
      roots.push_back(std::make_unique<Db>());
      roots.back()->package("p", std::to_string(i), "/usr/lib/p.so\n");
      CHECK(find_owners(roots.back()->fd.get(), {"/usr/lib/p.so"}, {}, cache.fd.get()).dpkg_index ==
            "built");
    }
    CHECK(cache.count() == k_max_dpkg_indexes);
    // The newest are kept.
    CHECK(find_owners(roots.back()->fd.get(), {"/usr/lib/p.so"}, {}, cache.fd.get()).dpkg_index ==
          "used");
  }
}

TEST_CASE("an index is kept only of a database read in full", "[dpkg_index]") {
  Db db;
  IndexDir cache;
  db.package("libcrashy1", "1.0-1", "/usr/lib/libcrashy.so.1\n");
  SECTION("building it may take the longer budget") {
    OwnershipLimits limits;
    limits.budget = std::chrono::milliseconds(0);
    const auto o = find_owners(db.fd.get(), {"/usr/lib/libcrashy.so.1"}, limits, cache.fd.get());
    CHECK(o.dpkg_index == "built");
    CHECK(db.version_of(o, "/usr/lib/libcrashy.so.1") == "libcrashy1 1.0-1");
    limits.index_budget = std::chrono::milliseconds(0);
    db.package("libcrashy1", "2.0-1", "/usr/lib/libcrashy.so.1\n");
    const auto late = find_owners(db.fd.get(), {"/usr/lib/libcrashy.so.1"}, limits, cache.fd.get());
    CHECK_FALSE(late.complete);
    CHECK(late.note.find("time budget") != std::string::npos);
    CHECK(late.dpkg_index.starts_with("not kept"));
  }
  SECTION("a budget that ran out") {
    OwnershipLimits limits;
    limits.max_lists = 0;
    const auto o = find_owners(db.fd.get(), {"/usr/lib/libcrashy.so.1"}, limits, cache.fd.get());
    CHECK_FALSE(o.complete);
    CHECK(o.dpkg_index.starts_with("not kept"));
    CHECK(cache.count() == 0);
  }
  SECTION("a huge list, a link and garbage own nothing, in the index as in a scan") {
    OwnershipLimits limits;
    limits.max_list_bytes = 1 << 16;
    test::spit(db.dir.path() / "var/lib/dpkg/info/huge.list",
               std::string(1 << 17, 'x') + "\n/usr/lib/libhuge.so\n");
    test::TempDir outside;
    test::spit(outside.path() / "evil.list", "/usr/lib/libevil.so\n");
    fs::create_symlink(outside.path() / "evil.list", db.dir.path() / "var/lib/dpkg/info/evil.list");
    std::string garbage;
    for (int i = 0; i < 1 << 12; ++i) {
      garbage += static_cast<char>((i * 7919) & 0xff);
    }
    test::spit(db.dir.path() / "var/lib/dpkg/info/garbage.list", garbage);
    const std::vector<std::string> paths = {"/usr/lib/libhuge.so", "/usr/lib/libevil.so",
                                            "/usr/lib/libcrashy.so.1"};
    for (const char* expect : {"built", "used"}) {
      const auto o = find_owners(db.fd.get(), paths, limits, cache.fd.get());
      CHECK(o.dpkg_index == expect);
      CHECK(o.complete);
      CHECK(o.unowned == std::vector<std::string>{"/usr/lib/libhuge.so", "/usr/lib/libevil.so"});
    }
  }
}

TEST_CASE("the index directory must be the handler's own", "[dpkg_index]") {
  test::TempDir store;
  UniqueFd fd(::open(store.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  SECTION("a link in its place") {
    test::TempDir elsewhere;
    fs::create_directory_symlink(elsewhere.path(), store.path() / k_dpkg_index_dir);
    CHECK_FALSE(open_dpkg_index_dir(fd.get()));
  }
  SECTION("writable by others") {
    fs::create_directory(store.path() / k_dpkg_index_dir);
    ::chmod((store.path() / k_dpkg_index_dir).c_str(), 0777);
    auto d = open_dpkg_index_dir(fd.get());
    REQUIRE_FALSE(d);
    CHECK(d.error().sys_errno == EPERM);
  }
  SECTION("created private") {
    REQUIRE(open_dpkg_index_dir(fd.get()));
    CHECK((fs::status(store.path() / k_dpkg_index_dir).permissions() & fs::perms::all) ==
          fs::perms::owner_all);
  }
}
