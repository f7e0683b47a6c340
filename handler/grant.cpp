// Step 9 of the handler: the crashing user's read access to their own crash (POSIX ACLs).
#include "common/base/escape.hpp"
#include "common/store/acl.hpp"
#include "common/store/names.hpp"
#include "common/store/user_view.hpp"
#include "handler/context.hpp"
#include "handler/steps.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

namespace handler {

namespace {

// Adds o+x to a store directory the crashing user must pass through to reach their crash: the
// name of what is below must be known to open it, and records and cores stay unreadable without
// their own ACL entry. Nothing per user lands on a directory that all users share.
common::Expected<void> let_others_traverse(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return common::fail_errno("Failed to stat", errno);
  }
  if ((st.st_mode & S_IXOTH) == 0 && ::fchmod(fd, (st.st_mode & 07777) | S_IXOTH) != 0) {
    return common::fail_errno("Failed to set the mode", errno);
  }
  return {};
}

} // namespace

// 9. Let the crashing user read this crash, as coredumpctl does, when the core may be theirs
// (core.access "owner": dump mode 1, an auxv without AT_SECURE, real ids equal to effective ids)
// and the uid is one person's (common::acl_may_grant: not root, nobody, a system or DynamicUser
// uid, which other processes share). Only %u counts: the uid in NT_PRPSINFO is the crasher's own
// namespace's, which may name another user here. POSIX ACLs rather than group or mode bits: one
// named user on this crash's core and record, and on the user's own view directory
// (.by-user/<uid>, common/store/user_view), which links to them. The store, host and executable
// directories only become traversable by others; they never gain an entry per user.
void grant_owner_access(Context& ctx) {
  const common::Record& r = ctx.record;
  if (!ctx.exe_dir || r.core.access != common::CoreAccess::owner || !ctx.args.uid ||
      ctx.args.dump_mode != 1 || *ctx.args.uid < 0 ||
      *ctx.args.uid > static_cast<int64_t>(static_cast<uid_t>(-1)) ||
      !common::acl_may_grant(static_cast<uid_t>(*ctx.args.uid))) {
    return;
  }
  const auto uid = static_cast<uid_t>(*ctx.args.uid);
  std::string failed;
  auto check = [&](const common::Expected<void>& done, const std::string& what) {
    if (!done && failed.empty()) {
      failed = common::quoted(what) + ": " + done.error().message;
    }
  };
  check(let_others_traverse(ctx.store->fd()), ctx.config.store);
  const int host = ::openat(ctx.store->fd(), r.store_host.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (host >= 0) {
    const common::UniqueFd host_fd(host);
    check(let_others_traverse(host), r.store_host);
  } else {
    check(common::fail_errno("Failed to open", errno), r.store_host);
  }
  check(let_others_traverse(ctx.exe_dir.get()), r.store_host + "/" + r.store_exe);
  if (r.core.present) {
    const std::string name = r.id + std::string(common::k_core_suffix);
    const int core =
        ::openat(ctx.exe_dir.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (core >= 0) {
      const common::UniqueFd core_fd(core);
      check(common::grant_user_access(core, uid, common::AclAccess::read), name);
    }
  }
  if (const std::string report = r.id + std::string(common::k_report_suffix);
      r.runtime_report.contains("stored")) {
    const int fd =
        ::openat(ctx.exe_dir.get(), report.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      const common::UniqueFd report_fd(fd);
      check(common::grant_user_access(fd, uid, common::AclAccess::read), report);
    }
  }
  const std::string view_name = std::string(common::k_user_view_dir) + "/" + std::to_string(uid);
  auto view = common::open_user_view(ctx.store->fd(), uid);
  if (!view) {
    check(std::unexpected(view.error()), view_name);
  } else {
    check(common::grant_user_access(view->get(), uid, common::AclAccess::list), view_name);
    check(common::add_to_user_view(ctx.store->fd(), view->get(), {r.store_host, r.store_exe, r.id}),
          view_name);
  }
  if (!failed.empty()) {
    ctx.warnings.push_back("Failed to let uid " + std::to_string(uid) + " read this crash (" +
                           failed + "), continuing: the user needs root to see it");
    return;
  }
  ctx.reader = uid; // and the record, when it is written
}

} // namespace handler
