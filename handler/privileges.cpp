#include "handler/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace common {

Expected<UserIds> lookup_user(const std::string& name) {
  struct passwd pw {};
  struct passwd* result = nullptr;
  std::vector<char> buf(16384);
  const int r = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &result);
  if (r != 0) {
    return fail_errno("Failed to look up user " + quoted(name), r);
  }
  if (!result) {
    return fail("No such user " + quoted(name));
  }
  return UserIds{pw.pw_uid, pw.pw_gid};
}

Expected<void> drop_privileges(UserIds ids) {
  // Groups first: once the uid is gone we could no longer change them.
  if (::setgroups(0, nullptr) != 0) {
    return fail_errno("Failed to clear supplementary groups", errno);
  }
  if (::setresgid(ids.gid, ids.gid, ids.gid) != 0) {
    return fail_errno("Failed to set gid " + std::to_string(ids.gid), errno);
  }
  if (::setresuid(ids.uid, ids.uid, ids.uid) != 0) {
    return fail_errno("Failed to set uid " + std::to_string(ids.uid), errno);
  }
  if (ids.uid != 0 && ::setuid(0) == 0) {
    return fail("privileges could be regained after dropping them");
  }
  // Changing credentials resets the dumpable flag to fs.suid_dumpable (commit_creds), which
  // corectl install sets to 2: clear it again so no process of the store user can ptrace us.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return fail("could not make the process non-dumpable after dropping privileges");
  }
  return {};
}

} // namespace common
