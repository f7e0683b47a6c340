#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>

using namespace common;

namespace {
size_t count_entries(const std::filesystem::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) {
    ++n;
  }
  return n;
}
} // namespace

TEST_CASE("an atomic file appears only on commit", "[atomic_file]") {
  test::TempDir dir;
  auto dirfd = open_at(AT_FDCWD, dir.str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(dirfd);
  SECTION("committed") {
    auto f = AtomicFile::create(dirfd->get(), "a.json", 0640);
    REQUIRE(f);
    REQUIRE(f->write(std::string_view("hello")));
    CHECK(count_entries(dir.path()) == 0); // O_TMPFILE: no name until commit
    REQUIRE(f->commit());
    CHECK(test::slurp(dir.path() / "a.json") == "hello");
    struct stat st {};
    REQUIRE(::stat((dir.path() / "a.json").c_str(), &st) == 0);
    CHECK((st.st_mode & 0007) == 0);
  }
  SECTION("abandoned") {
    {
      auto f = AtomicFile::create(dirfd->get(), "b.json", 0640);
      REQUIRE(f);
      REQUIRE(f->write(std::string_view("partial")));
    }
    CHECK(count_entries(dir.path()) == 0);
  }
  SECTION("never replaces unless asked") {
    REQUIRE(write_file_atomic(dirfd->get(), "c", "one", 0640));
    auto again = write_file_atomic(dirfd->get(), "c", "two", 0640);
    REQUIRE_FALSE(again);
    CHECK(again.error().sys_errno == EEXIST);
    CHECK(test::slurp(dir.path() / "c") == "one");
    REQUIRE(write_file_atomic(dirfd->get(), "c", "three", 0640, Replace::yes));
    CHECK(test::slurp(dir.path() / "c") == "three");
    CHECK(count_entries(dir.path()) == 1);
  }
}
