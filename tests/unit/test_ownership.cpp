#include "common/packages/owner_json.hpp"
#include "common/packages/ownership.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace common;
namespace fs = std::filesystem;

namespace {

// A crashed root with a dpkg database: `status` paragraphs and one .list per package.
struct FakeRoot {
  test::TempDir dir;
  UniqueFd fd;

  FakeRoot() {
    fs::create_directories(dir.path() / "var/lib/dpkg/info");
    fd = UniqueFd(::open(dir.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  void file(const std::string& rel, const std::string& text) const {
    fs::create_directories((dir.path() / rel).parent_path());
    test::spit(dir.path() / rel, text);
  }
  void package(const std::string& list, const std::string& name, const std::string& version,
               const std::string& lines, const std::string& status = "install ok installed") {
    std::string old;
    if (fs::exists(dir.path() / "var/lib/dpkg/status")) {
      old = test::slurp(dir.path() / "var/lib/dpkg/status");
    }
    file("var/lib/dpkg/status", old + "Package: " + name + "\nStatus: " + status +
                                    "\nArchitecture: amd64\nVersion: " + version + "\n\n");
    file("var/lib/dpkg/info/" + list + ".list", lines);
  }
  const Owner* owner(const Ownership& o, const std::string& path) const {
    for (const auto& w : o.owners) {
      if (w.path == path) {
        return &w;
      }
    }
    return nullptr;
  }
};

} // namespace

TEST_CASE("merged-/usr aliases share a key", "[ownership]") {
  CHECK(usr_merge_key("/usr/lib/x86_64-linux-gnu/libc.so.6") == "/lib/x86_64-linux-gnu/libc.so.6");
  CHECK(usr_merge_key("/lib/x86_64-linux-gnu/libc.so.6") == "/lib/x86_64-linux-gnu/libc.so.6");
  CHECK(usr_merge_key("/usr/bin/ruby") == usr_merge_key("/bin/ruby"));
  CHECK(usr_merge_key("/usr/share/x") == "/usr/share/x");
  CHECK(usr_merge_key("/usr/libexec/x") == "/usr/libexec/x");
}

TEST_CASE("dpkg's database of the crashed root names package and version", "[ownership]") {
  FakeRoot root;
  root.package("libc6:amd64", "libc6", "2.36-9+deb12u4",
               "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n");
  root.package("libcrashy1", "libcrashy1", "1.0-1", "/usr/lib/libcrashy.so.1\n");
  root.package("gone", "gone", "0.1-1", "/usr/lib/gone.so\n", "deinstall ok config-files");
  const auto o =
      find_owners(root.fd.get(), {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/libcrashy.so.1",
                                  "/usr/lib/gone.so", "/opt/mine.so", "/usr/lib/libcrashy.so.1"});
  const Owner* libc = root.owner(o, "/usr/lib/x86_64-linux-gnu/libc.so.6");
  REQUIRE(libc);
  CHECK(libc->package == "libc6");
  CHECK(libc->version == "2.36-9+deb12u4");
  CHECK(libc->arch == "amd64");
  CHECK(libc->source == OwnerSource::dpkg);
  const Owner* crashy = root.owner(o, "/usr/lib/libcrashy.so.1");
  REQUIRE(crashy);
  CHECK(crashy->version == "1.0-1");
  // The list of a removed package's config files owns no library; the version is unknown.
  const Owner* gone = root.owner(o, "/usr/lib/gone.so");
  REQUIRE(gone);
  CHECK(gone->version.empty());
  CHECK(o.owners.size() == 3);
  CHECK(o.unowned == std::vector<std::string>{"/opt/mine.so"});
  CHECK(o.complete);
  CHECK(o.dpkg_state.starts_with("status "));

  SECTION("the state changes with the database") {
    const std::string before = o.dpkg_state;
    ::usleep(10000);
    root.package("libcrashy1", "libcrashy1", "2.0-1", "/usr/lib/libcrashy.so.1\n");
    const auto again = find_owners(root.fd.get(), {"/usr/lib/libcrashy.so.1"});
    CHECK(again.dpkg_state != before);
  }
  SECTION("JSON and back") {
    const auto j = to_json(o);
    const auto back = ownership_from_json(j);
    REQUIRE(back);
    REQUIRE(back->owners.size() == 3);
    CHECK(back->owners[0].package == o.owners[0].package);
    CHECK(back->owners[0].arch == "amd64");
    CHECK(back->unowned == o.unowned);
    CHECK(back->dpkg_state == o.dpkg_state);
    CHECK_FALSE(ownership_from_json(nlohmann::json::parse(R"({"owners":[{"path":1}]})")));
    CHECK_FALSE(ownership_from_json(nlohmann::json::array()));
  }
}

TEST_CASE("Python distributions, gems and npm packages", "[ownership]") {
  FakeRoot root;
  const std::string site = "usr/local/lib/python3.11/site-packages/";
  root.file(site + "numpy-1.26.4.dist-info/RECORD",
            "numpy/__init__.py,sha256=x,100\n\"numpy/core/_multiarray_umath.cpython-311-x86_64-"
            "linux-gnu.so\",sha256=y,200\nnumpy-1.26.4.dist-info/RECORD,,\n");
  root.file(site + "other-2.0.dist-info/RECORD", "other/x.py,,\n");
  root.file("srv/app/node_modules/@scope/native/package.json",
            R"({"name": "@scope/native", "version": "3.1.0"})");
  root.file("srv/app/node_modules/bad/package.json", std::string(100, '['));
  const std::string py =
      "/" + site + "numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so";
  const std::string gem = "/usr/local/lib/ruby/gems/3.2.0/gems/json-2.7.1/lib/json/ext/parser.so";
  const std::string platform_gem =
      "/var/lib/gems/3.1.0/gems/nokogiri-1.15.4-x86_64-linux/lib/nokogiri/3.1/nokogiri.so";
  const std::string npm = "/srv/app/node_modules/@scope/native/build/Release/native.node";
  const std::string bad = "/srv/app/node_modules/bad/x.node";
  const auto o = find_owners(root.fd.get(), {py, gem, platform_gem, npm, bad});
  const Owner* p = root.owner(o, py);
  REQUIRE(p);
  CHECK(p->package == "numpy");
  CHECK(p->version == "1.26.4");
  CHECK(p->source == OwnerSource::python);
  const Owner* g = root.owner(o, gem);
  REQUIRE(g);
  CHECK(g->package == "json");
  CHECK(g->version == "2.7.1");
  CHECK(g->source == OwnerSource::gem);
  const Owner* pg = root.owner(o, platform_gem);
  REQUIRE(pg);
  CHECK(pg->package == "nokogiri");
  CHECK(pg->version == "1.15.4-x86_64-linux");
  const Owner* n = root.owner(o, npm);
  REQUIRE(n);
  CHECK(n->package == "@scope/native");
  CHECK(n->version == "3.1.0");
  CHECK(n->source == OwnerSource::npm);
  // A package.json nested past the JSON bound is not parsed at all.
  CHECK(o.unowned == std::vector<std::string>{bad});
}

TEST_CASE("hostile databases stay inside the root and the budget", "[ownership]") {
  FakeRoot root;
  test::TempDir outside;
  // A database outside the root that a link would lead to.
  fs::create_directories(outside.path() / "info");
  test::spit(outside.path() / "info/evil.list", "/usr/lib/libcrashy.so.1\n");
  test::spit(outside.path() / "status",
             "Package: evil\nStatus: install ok installed\nVersion: 6.6.6\n\n");

  SECTION("a symbolic link to a list outside is not followed") {
    root.package("libcrashy1", "libcrashy1", "1.0-1", "/usr/lib/other.so\n");
    fs::create_symlink(outside.path() / "info/evil.list",
                       root.dir.path() / "var/lib/dpkg/info/evil.list");
    const auto o = find_owners(root.fd.get(), {"/usr/lib/libcrashy.so.1"});
    CHECK(o.owners.empty());
  }
  SECTION("a symbolic link in place of the database directory is not followed") {
    fs::remove_all(root.dir.path() / "var/lib/dpkg");
    fs::create_directories(root.dir.path() / "var/lib");
    fs::create_directory_symlink(outside.path(), root.dir.path() / "var/lib/dpkg");
    const auto o = find_owners(root.fd.get(), {"/usr/lib/libcrashy.so.1"});
    CHECK(o.owners.empty());
    CHECK(o.dpkg_state.empty());
  }
  SECTION("'..' in a site-packages path stays in the root") {
    // In the root, /../../x is /x: the outside directory is never reached.
    const std::string rel = fs::relative(outside.path(), "/").string();
    test::spit(outside.path() / "RECORD", "x.py,,\n");
    fs::create_directories(outside.path() / "site-packages/evil-1.0.dist-info");
    test::spit(outside.path() / "site-packages/evil-1.0.dist-info/RECORD", "x.py,,\n");
    const auto o = find_owners(root.fd.get(), {"/../../../../" + rel + "/site-packages/x.py"});
    CHECK(o.owners.empty());
  }
  SECTION("binary garbage owns nothing and breaks nothing") {
    std::string garbage;
    for (int i = 0; i < 1 << 16; ++i) {
      garbage += static_cast<char>((i * 7919) & 0xff);
    }
    // The paragraph after the garbage (and a blank line) is still read.
    root.file("var/lib/dpkg/status", garbage + "\n\n");
    root.file("var/lib/dpkg/info/x.list", garbage);
    root.package("libcrashy1", "libcrashy1", "1.0-1", "/usr/lib/libcrashy.so.1\n");
    const auto o = find_owners(root.fd.get(), {"/usr/lib/libcrashy.so.1", "/lib/\xff\xfe"});
    REQUIRE(o.owners.size() == 1);
    CHECK(o.owners[0].version == "1.0-1");
    CHECK(to_json(o).dump().size() > 0);
  }
  SECTION("a huge list is skipped, many lists end at the budget") {
    OwnershipLimits limits;
    limits.max_list_bytes = 1 << 20;
    limits.max_lists = 50;
    root.file("var/lib/dpkg/info/huge.list", std::string(2 << 20, '/'));
    for (int i = 0; i < 100; ++i) {
      root.package("p" + std::to_string(i), "p" + std::to_string(i), "1", "/usr/lib/p.so\n");
    }
    const auto o = find_owners(root.fd.get(), {"/usr/lib/nothing.so"}, limits);
    CHECK_FALSE(o.complete);
    CHECK(o.note.find("file count budget") != std::string::npos);
  }
  SECTION("the time budget ends the lookup") {
    OwnershipLimits limits;
    limits.budget = std::chrono::milliseconds(0);
    root.package("libcrashy1", "libcrashy1", "1.0-1", "/usr/lib/libcrashy.so.1\n");
    const auto o = find_owners(root.fd.get(), {"/usr/lib/libcrashy.so.1"}, limits);
    CHECK_FALSE(o.complete);
    CHECK(o.note.find("time budget") != std::string::npos);
  }
  SECTION("the paths looked up are bounded") {
    OwnershipLimits limits;
    limits.max_paths = 2;
    const auto o = find_owners(root.fd.get(), {"/a", "/b", "/c"}, limits);
    CHECK(o.unowned.size() == 2);
    CHECK_FALSE(o.complete);
  }
}

TEST_CASE("the host's own database: libc through its merged-/usr alias", "[ownership]") {
  if (!fs::exists("/var/lib/dpkg/status") || !fs::exists("/var/lib/dpkg/info/libc6:amd64.list")) {
    WARN("skipped: no Debian amd64 host");
    return;
  }
  UniqueFd host(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // The alias is under test, not the budget: a loaded machine may take longer than 250 ms.
  OwnershipLimits limits;
  limits.budget = std::chrono::seconds(30);
  const auto o = find_owners(host.get(), {"/usr/lib/x86_64-linux-gnu/libc.so.6"}, limits);
  REQUIRE(o.owners.size() == 1);
  CHECK(o.owners[0].package == "libc6");
  CHECK_FALSE(o.owners[0].version.empty());
}
