// Dropping root for the unprivileged store user.
#pragma once

#include "common/base/error.hpp"

#include <sys/types.h>

#include <string>

namespace common {

struct UserIds {
  uid_t uid;
  gid_t gid;
};

// Looks up a user by name.
Expected<UserIds> lookup_user(const std::string& name);

// Switches all uids and gids to `ids` and clears supplementary groups; verifies that root cannot
// be regained. Only meaningful when running as root.
Expected<void> drop_privileges(UserIds ids);

} // namespace common
