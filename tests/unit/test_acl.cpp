#include "common/base/fd.hpp"
#include "common/store/acl.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <acl/libacl.h>
#include <fcntl.h>
#include <sys/acl.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

namespace {

// The ACL in short text form ("user::rw-,user:4242:r--,group::---,mask::r--,other::---").
std::string acl_text(int fd) {
  acl_t acl = acl_get_fd(fd);
  REQUIRE(acl != nullptr);
  char* text = acl_to_any_text(acl, nullptr, ',', TEXT_NUMERIC_IDS);
  std::string out = text != nullptr ? text : "";
  acl_free(text);
  acl_free(acl);
  return out;
}

common::UniqueFd make(const test::TempDir& dir, const char* name, mode_t mode) {
  const std::string path = dir.str() + "/" + name;
  common::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  REQUIRE(fd);
  REQUIRE(::fchmod(fd.get(), mode) == 0); // whatever the umask
  return fd;
}

} // namespace

TEST_CASE("acl: one more user may read, the group gains nothing", "[acl]") {
  test::TempDir dir;
  auto core = make(dir, "core", 0600);
  auto granted = common::grant_user_access(core.get(), 4242, common::AclAccess::read);
  if (!granted && granted.error().sys_errno == ENOTSUP) {
    WARN("no ACLs on this file system, not tested");
    return;
  }
  REQUIRE(granted);
  CHECK(acl_text(core.get()) == "user::rw-,user:4242:r--,group::---,mask::r--,other::---");
  // Granting again changes nothing; a second user gets their own entry.
  REQUIRE(common::grant_user_access(core.get(), 4242, common::AclAccess::read));
  REQUIRE(common::grant_user_access(core.get(), 4343, common::AclAccess::read));
  CHECK(acl_text(core.get()) ==
        "user::rw-,user:4242:r--,user:4343:r--,group::---,mask::r--,other::---");

  // Directories: r-x, and a 0750 group keeps exactly r-x.
  const std::string sub = dir.str() + "/d";
  REQUIRE(::mkdir(sub.c_str(), 0750) == 0);
  REQUIRE(::chmod(sub.c_str(), 0750) == 0);
  common::UniqueFd d(::open(sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(common::grant_user_access(d.get(), 4242, common::AclAccess::list));
  CHECK(acl_text(d.get()) == "user::rwx,user:4242:r-x,group::r-x,mask::r-x,other::---");

  // A rewrite keeps who may read; a file with only mode bits copies nothing.
  auto copy = make(dir, "copy", 0600);
  REQUIRE(common::copy_access_acl(core.get(), copy.get()));
  CHECK(acl_text(copy.get()) == acl_text(core.get()));
  auto plain = make(dir, "plain", 0640);
  auto target = make(dir, "target", 0600);
  REQUIRE(common::copy_access_acl(plain.get(), target.get()));
  CHECK(acl_text(target.get()) == "user::rw-,group::---,other::---");
}

TEST_CASE("acl: only a regular user's uid may be granted", "[acl]") {
  CHECK(common::acl_may_grant(1000));
  CHECK(common::acl_may_grant(60000));
  CHECK(common::acl_may_grant(100000)); // a container's mapped uid is one user's
  CHECK_FALSE(common::acl_may_grant(0));
  CHECK_FALSE(common::acl_may_grant(999));   // system users
  CHECK_FALSE(common::acl_may_grant(61184)); // DynamicUser, first and last
  CHECK_FALSE(common::acl_may_grant(65519));
  CHECK_FALSE(common::acl_may_grant(65534)); // nobody
  CHECK_FALSE(common::acl_may_grant(static_cast<uid_t>(-1)));
}
