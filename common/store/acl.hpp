// POSIX ACL entries that let one more user read a file or list a directory: how the handler
// shows a user their own crashes without making anything readable to others.
#pragma once

#include "common/base/error.hpp"

#include <sys/types.h>

namespace common {

// What a named-user entry allows: `read` (r--) for records and cores, `list` (r-x) for the
// directories above them.
enum class AclAccess { read, list };

// Adds (or widens) the entry user:`uid` on the open file or directory `fd`, and recomputes the
// mask so that it takes effect without widening what the owning group may do. Only the owner of
// the file (or root) may do this; fails with ENOTSUP on file systems without ACLs.
Expected<void> grant_user_access(int fd, uid_t uid, AclAccess access);

// Copies the access ACL of `from` onto `to` (a rewrite of a file must keep who may read it);
// nothing to do, and no error, when `from` has only the permission bits.
Expected<void> copy_access_acl(int from, int to);

} // namespace common
