// The per-user view of the store: <root>/.by-user/<uid>/<id>, one symbolic link per crash the
// user may read, to "../../<host>/<exe>/<id>.json". It lets a user find their own crashes
// without listing the store: the root, host and executable directories are only traversable by
// others (mode o+x), and each user's directory carries exactly one ACL entry, for that uid. No
// directory shared by users gains an entry per user (an ACL holds about 500 on ext4).
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace common {

// The view's directory below the store root (hidden: no store walk enters it).
inline constexpr const char* k_user_view_dir = ".by-user";

// One crash in a user's view: store components and record id.
struct ViewEntry {
  std::string host;
  std::string exe;
  std::string id;
};

// The link target of `e`, relative to the user's view directory.
std::string view_link_target(const ViewEntry& e);
// The entry a link named `name` with target `target` stands for; an error when either is not
// what view_link_target() writes (the store's owner can put anything there).
Expected<ViewEntry> parse_view_link(std::string_view name, std::string_view target);

// Opens (creating where missing) <root>/.by-user, mode 0711, and <root>/.by-user/<uid>, mode
// 0750, owned by the caller (the store user). Returns the user's directory; the caller grants
// the user access to it.
Expected<UniqueFd> open_user_view(int store_fd, uid_t uid);

// Adds `e` to the user's view `view_fd` (an existing link is kept), and removes the links whose
// record is gone from the store (retention removed it), so the view stays as large as the
// user's crashes in the store.
Expected<void> add_to_user_view(int store_fd, int view_fd, const ViewEntry& e);

// The entries of `uid`'s view, read relative to `store_fd` (which may be an O_PATH descriptor
// of a root the caller may only traverse). Malformed links are skipped and counted in
// `malformed`. ENOENT when the user has no view.
Expected<std::vector<ViewEntry>> read_user_view(int store_fd, uid_t uid, size_t& malformed);

} // namespace common
