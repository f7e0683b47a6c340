#include "cli/debuginfo/debug_root.hpp"
#include "common/crash/symbolize.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

using namespace cli;
namespace fs = std::filesystem;

namespace {

// The first "corectl-*" directory under `base`, or an empty path.
fs::path made_dir(const fs::path& base) {
  for (const auto& e : fs::directory_iterator(base)) {
    if (e.path().filename().string().starts_with("corectl-")) {
      return e.path();
    }
  }
  return {};
}

} // namespace

TEST_CASE("the debugger's directory goes with everything in it, links not followed",
          "[debug_root]") {
  test::TempDir tmp;
  const fs::path outside = tmp.path() / "outside";
  fs::create_directory(outside);
  test::spit(outside / "keep", "precious");
  fs::create_directory(tmp.path() / "base");
  {
    auto dir = DebugDir::create((tmp.path() / "base").string(), std::nullopt);
    REQUIRE(dir);
    const fs::path path = dir->path();
    CHECK(made_dir(tmp.path() / "base") == path);
    CHECK((fs::status(path).permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK(fs::is_directory(path / "sysroot"));
    // What the debugger's user may leave there: links to elsewhere, nested directories.
    fs::create_directory_symlink(outside, path / "link");
    fs::create_directories(path / "sysroot/a/b");
    fs::create_symlink(outside / "keep", path / "sysroot/a/b/keep");
    test::spit(path / "sysroot/a/file", "x");
  }
  CHECK(made_dir(tmp.path() / "base").empty());
  CHECK(test::slurp(outside / "keep") == "precious");
}

TEST_CASE("the sysroot takes plain absolute paths and checked build-ids only", "[debug_root]") {
  test::TempDir tmp;
  auto dir = DebugDir::create(tmp.str(), std::nullopt);
  REQUIRE(dir);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const auto id = common::read_build_id(self);
  REQUIRE(id);

  SECTION("a copy with the build-id the core saw") {
    auto copy = copy_module(*dir, self, *id, Verify::build_id);
    REQUIRE(copy);
    CHECK(*copy == dir->path() + "/sysroot" + self);
    CHECK(common::read_build_id(*copy) == id);
  }
  SECTION("another build-id: no copy left") {
    auto copy =
        copy_module(*dir, self, "00112233445566778899aabbccddeeff00112233", Verify::build_id);
    REQUIRE_FALSE(copy);
    CHECK(copy.error().message.find("build-id") != std::string::npos);
    CHECK_FALSE(fs::exists(dir->path() + "/sysroot" + self));
  }
  SECTION("paths that would leave the sysroot") {
    for (const std::string bad : {"/a/../../etc/x", "relative", "/a//b", "/a/./b", "/"}) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      CHECK_FALSE(add_to_sysroot(*dir, bad, fd, "", Verify::none));
      ::close(fd);
    }
  }
  SECTION("a FIFO is refused, not waited on") {
    const std::string fifo = tmp.str() + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto copy = copy_module(*dir, fifo, "", Verify::none);
    REQUIRE_FALSE(copy);
    CHECK_FALSE(fs::exists(dir->path() + "/sysroot" + fifo));
  }
  SECTION("aliases lead to the copies only") {
    const fs::path lib = tmp.path() / "lib";
    fs::create_directory(lib);
    fs::copy_file(self, lib / "libx.so.1.2");
    fs::create_symlink("libx.so.1.2", lib / "libx.so.1");
    fs::create_symlink("/etc/passwd", lib / "passwd");
    const std::string real = (lib / "libx.so.1.2").string();
    REQUIRE(copy_module(*dir, real, *id, Verify::build_id));
    CHECK(add_aliases(*dir, {real}) >= 1);
    const fs::path in = fs::path(dir->path() + "/sysroot" + lib.string());
    CHECK(fs::read_symlink(in / "libx.so.1") == fs::path(dir->path() + "/sysroot" + real));
    CHECK_FALSE(fs::exists(fs::symlink_status(in / "passwd")));
  }
}
