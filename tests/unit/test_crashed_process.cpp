#include "handler/crashed_process.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

using handler::CrashedProcess;

TEST_CASE("the handle of a live process holds its descriptors", "[crashed_process]") {
  const auto p = CrashedProcess::open(::getpid(), std::nullopt);
  REQUIRE(p.valid());
  CHECK(p.pid() == ::getpid());
  CHECK(p.pidfd() >= 0);
  CHECK(p.still_the_same());
  CHECK(p.root() >= 0);
  CHECK(p.cwd() >= 0);
  // Its memory, read through the handle: a value of ours at its address.
  const uint64_t marker = 0x5eed5eed5eed5eedULL;
  uint64_t seen = 0;
  REQUIRE(p.mem() >= 0);
  CHECK(::pread(p.mem(), &seen, sizeof seen,
                static_cast<off_t>(reinterpret_cast<uintptr_t>(&marker))) == sizeof seen);
  CHECK(seen == marker);
}

TEST_CASE("a pidfd of another process gives no handle", "[crashed_process]") {
  const int other = static_cast<int>(::syscall(SYS_pidfd_open, ::getppid(), 0));
  REQUIRE(other >= 0);
  CHECK_FALSE(CrashedProcess::open(::getpid(), other).valid());
  ::close(other);
  CHECK_FALSE(CrashedProcess::open(0, std::nullopt).valid());
}

TEST_CASE("mapped files come from map_files, not from their paths", "[crashed_process]") {
  if (::geteuid() != 0) {
    WARN("skipped: map_files needs CAP_SYS_ADMIN");
    return;
  }
  // A file mapped from offset 0, then renamed and replaced: the handle holds the mapped one.
  char dir[] = "/tmp/pc-crashed-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/lib.so";
  std::ofstream(path) << "mapped contents";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  void* at = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
  REQUIRE(at != MAP_FAILED);
  ::close(fd);
  ::unlink(path.c_str());
  std::ofstream(path) << "another file";

  auto p = CrashedProcess::open(::getpid(), std::nullopt);
  REQUIRE(p.valid());
  CHECK(p.mapped_files() > 0);
  const auto start = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(at));
  const common::UniqueFd mapped = p.take_mapped_file(start);
  REQUIRE(mapped);
  char buf[32] = {};
  CHECK(::pread(mapped.get(), buf, sizeof buf - 1, 0) == 15);
  CHECK(std::string(buf) == "mapped contents");
  CHECK_FALSE(p.take_mapped_file(start)); // moved out once
  ::munmap(at, 4096);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST_CASE("a file mapped at a low address (a non-PIE executable's) is found too",
          "[crashed_process]") {
  if (::geteuid() != 0) {
    WARN("skipped: map_files needs CAP_SYS_ADMIN");
    return;
  }
  // /proc/<pid>/maps pads addresses to 8 hex digits ("00700000"), map_files does not.
  char dir[] = "/tmp/pc-crashed-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/exe";
  std::ofstream(path) << "low contents";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  void* want = reinterpret_cast<void*>(uintptr_t{0x700000});
  void* at = ::mmap(want, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
  ::close(fd);
  if (at != want) {
    WARN("skipped: 0x700000 is taken");
  } else {
    auto p = CrashedProcess::open(::getpid(), std::nullopt);
    REQUIRE(p.valid());
    const common::UniqueFd mapped = p.take_mapped_file(0x700000);
    REQUIRE(mapped);
    char buf[32] = {};
    CHECK(::pread(mapped.get(), buf, sizeof buf - 1, 0) == 12);
    CHECK(std::string(buf) == "low contents");
  }
  if (at != MAP_FAILED) {
    ::munmap(at, 4096);
  }
  ::unlink(path.c_str());
  ::rmdir(dir);
}
