// POSIX ACL entries that let one more user read a file or list a directory: how the handler
// shows a user their own crashes without making anything readable to others.
#pragma once

#include "common/base/error.hpp"

#include <sys/types.h>

namespace common {

// Uids that never get an entry: they are not one person's. Root reads everything anyway;
// system uids (below k_first_regular_uid, Debian's SYS_UID_MAX + 1) and nobody are shared by
// services; DynamicUser uids (k_dynamic_uid_min..max) are handed from one service to the next.
// Any process of such a uid could read the core of another.
inline constexpr uid_t k_first_regular_uid = 1000;
inline constexpr uid_t k_dynamic_uid_min = 61184;
inline constexpr uid_t k_dynamic_uid_max = 65519;
inline constexpr uid_t k_nobody_uid = 65534;

// True when `uid` may be given read access to its own crash (a regular user's uid).
bool acl_may_grant(uid_t uid);

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
