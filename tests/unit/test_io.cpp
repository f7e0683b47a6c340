#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

using common::FollowLinks;
using common::open_or_make_dir;

TEST_CASE("open_or_make_dir creates once and opens ever after", "[io]") {
  test::TempDir dir;
  const auto old_mask = ::umask(022);
  auto made = open_or_make_dir(AT_FDCWD, dir.str() + "/a", 0750);
  ::umask(old_mask);
  REQUIRE(made);
  struct stat st {};
  REQUIRE(::fstat(made->get(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0750);
  // Again (a racing handler that lost the mkdir): the same directory, not an error.
  auto again = open_or_make_dir(AT_FDCWD, dir.str() + "/a", 0700);
  REQUIRE(again);
  struct stat st2 {};
  REQUIRE(::fstat(again->get(), &st2) == 0);
  CHECK(st2.st_ino == st.st_ino);
  CHECK((st2.st_mode & 07777) == 0750); // an existing directory keeps its mode
  // Relative to a directory descriptor.
  auto inner = open_or_make_dir(made->get(), "b", 0700);
  REQUIRE(inner);
  CHECK(std::filesystem::is_directory(dir.path() / "a/b"));
}

TEST_CASE("open_or_make_dir refuses links unless told to follow them", "[io]") {
  test::TempDir dir;
  std::filesystem::create_directory(dir.path() / "real");
  std::filesystem::create_directory_symlink(dir.path() / "real", dir.path() / "link");
  auto root = common::open_at(AT_FDCWD, dir.str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(root);

  auto refused = open_or_make_dir(root->get(), "link", 0700);
  REQUIRE_FALSE(refused);
  CHECK((refused.error().sys_errno == ELOOP || refused.error().sys_errno == ENOTDIR));
  CHECK(refused.error().message.find("'link'") != std::string::npos);
  // Nor through a linked directory on the way: under a descriptor, one component only.
  auto deeper = open_or_make_dir(root->get(), "link/sub", 0700);
  REQUIRE_FALSE(deeper);
  CHECK(deeper.error().sys_errno == EINVAL);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "real/sub"));

  auto followed = open_or_make_dir(AT_FDCWD, dir.str() + "/link", 0700, FollowLinks::yes);
  REQUIRE(followed);
  struct stat a {
  }, b{};
  REQUIRE(::fstat(followed->get(), &a) == 0);
  REQUIRE(::stat((dir.str() + "/real").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
}

TEST_CASE("open_or_make_dir says what failed", "[io]") {
  test::TempDir dir;
  test::spit(dir.path() / "file", "x");
  auto not_dir = open_or_make_dir(AT_FDCWD, dir.str() + "/file", 0700);
  REQUIRE_FALSE(not_dir);
  CHECK(not_dir.error().sys_errno == ENOTDIR);
  auto missing_parent = open_or_make_dir(AT_FDCWD, dir.str() + "/no/such", 0700);
  REQUIRE_FALSE(missing_parent);
  CHECK(missing_parent.error().sys_errno == ENOENT);
  CHECK(missing_parent.error().message.starts_with("Failed to create directory '"));
}

TEST_CASE("read_exact_at and write_all_at move exact ranges or say why not", "[io]") {
  test::TempDir dir;
  const common::UniqueFd fd(::open((dir.str() + "/f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(fd);
  const std::string text = "hello, world";
  REQUIRE(common::write_all_at(fd.get(), std::as_bytes(std::span(text)), 4096));
  struct stat st {};
  REQUIRE(::fstat(fd.get(), &st) == 0);
  CHECK(st.st_size == 4096 + static_cast<off_t>(text.size()));

  std::string back(5, '\0');
  REQUIRE(common::read_exact_at(fd.get(), std::as_writable_bytes(std::span(back)), 4096 + 7));
  CHECK(back == "world");

  // One byte past the end: an error with errno 0 (end of file), not a short read.
  std::string over(6, '\0');
  auto short_read =
      common::read_exact_at(fd.get(), std::as_writable_bytes(std::span(over)), 4096 + 7);
  REQUIRE_FALSE(short_read);
  CHECK(short_read.error().sys_errno == 0);

  // A range past the largest off_t is refused before any read.
  auto far =
      common::read_exact_at(fd.get(), std::as_writable_bytes(std::span(back)), UINT64_MAX - 2);
  REQUIRE_FALSE(far);

  // A descriptor that cannot be read keeps the errno of the read.
  const common::UniqueFd wronly(::open((dir.str() + "/f").c_str(), O_WRONLY | O_CLOEXEC));
  auto bad = common::read_exact_at(wronly.get(), std::as_writable_bytes(std::span(back)), 0);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().sys_errno == EBADF);
}

TEST_CASE("open_regular opens a regular file only, and without waiting", "[io]") {
  test::TempDir dir;
  const auto dirfd = ::open(dir.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dirfd >= 0);
  const common::UniqueFd dfd(dirfd);
  {
    auto f = ::open((dir.str() + "/file").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(f >= 0);
    REQUIRE(::write(f, "12345", 5) == 5);
    ::close(f);
  }
  auto file = common::open_regular(dfd.get(), "file");
  REQUIRE(file);
  CHECK(file->size == 5);
  CHECK(file->fd.get() >= 0);

  std::filesystem::create_symlink(dir.path() / "file", dir.path() / "link");
  auto link = common::open_regular(dfd.get(), "link");
  REQUIRE_FALSE(link);
  CHECK(link.error().sys_errno == ELOOP);
  CHECK(link.error().message.find("a symbolic link, not followed") != std::string::npos);

  // A FIFO with no writer: opened for reading without O_NONBLOCK this would wait forever.
  REQUIRE(::mkfifo((dir.str() + "/fifo").c_str(), 0600) == 0);
  auto fifo = common::open_regular(dfd.get(), "fifo");
  REQUIRE_FALSE(fifo);
  CHECK(fifo.error().sys_errno == EINVAL);
  CHECK(fifo.error().message.find("not a regular file") != std::string::npos);

  std::filesystem::create_directory(dir.path() / "dir");
  CHECK_FALSE(common::open_regular(dfd.get(), "dir"));
  auto gone = common::open_regular(dfd.get(), "gone");
  REQUIRE_FALSE(gone);
  CHECK(gone.error().sys_errno == ENOENT);
}
