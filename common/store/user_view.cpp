#include "common/store/user_view.hpp"

#include "common/base/io.hpp"
#include "common/store/names.hpp"
#include "common/store/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace common {

namespace {

constexpr unsigned k_view_root_mode = 0711; // others pass through to their own directory only
constexpr unsigned k_view_user_mode = 0750;
constexpr std::string_view k_up = "../../";
// A link target is "../../" + two components + "/" + id + ".json": never longer than this.
constexpr size_t k_target_max = 1024;

std::string record_path(const ViewEntry& e) {
  return e.host + "/" + e.exe + "/" + e.id + std::string(k_record_suffix);
}

} // namespace

std::string view_link_target(const ViewEntry& e) {
  return std::string(k_up) + record_path(e);
}

Expected<ViewEntry> parse_view_link(std::string_view name, std::string_view target) {
  auto bad = [&] { return fail("not a view entry: " + quoted(std::string(name))); };
  if (!is_record_id(name) || !target.starts_with(k_up)) {
    return bad();
  }
  target.remove_prefix(k_up.size());
  const size_t first = target.find('/');
  const size_t second = first == std::string_view::npos ? first : target.find('/', first + 1);
  if (second == std::string_view::npos) {
    return bad();
  }
  ViewEntry e{std::string(target.substr(0, first)),
              std::string(target.substr(first + 1, second - first - 1)), std::string(name)};
  // Components names.hpp produces, and the record of the link's own name: nothing else is ever
  // opened through a view, whoever wrote it.
  if (!is_safe_component(e.host) || !is_safe_component(e.exe) ||
      target.substr(second + 1) != e.id + std::string(k_record_suffix)) {
    return bad();
  }
  return e;
}

Expected<UniqueFd> open_user_view(int store_fd, uid_t uid) {
  auto root = open_or_make_dir(store_fd, k_user_view_dir, k_view_root_mode);
  if (!root) {
    return std::unexpected(root.error());
  }
  // The umask took the bits for others off a new directory; an old one keeps what it has.
  struct stat st {};
  if (::fstat(root->get(), &st) == 0 && (st.st_mode & 07777) != k_view_root_mode &&
      ::fchmod(root->get(), k_view_root_mode) != 0) {
    return fail_errno("Failed to set the mode of " + quoted(k_user_view_dir), errno);
  }
  return open_or_make_dir(root->get(), std::to_string(uid), k_view_user_mode);
}

Expected<void> add_to_user_view(int store_fd, int view_fd, const ViewEntry& e) {
  std::vector<std::string> names;
  if (auto listed = list_dir(view_fd, [&](std::string_view n) { names.emplace_back(n); });
      !listed) {
    return std::unexpected(listed.error());
  }
  char target[k_target_max + 1];
  for (const auto& name : names) {
    const ssize_t n = ::readlinkat(view_fd, name.c_str(), target, k_target_max);
    if (n < 0) {
      continue; // not a link: not ours to judge
    }
    auto entry = parse_view_link(name, std::string_view(target, static_cast<size_t>(n)));
    struct stat st {};
    if (entry && ::fstatat(store_fd, record_path(*entry).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 &&
        errno == ENOENT) {
      ::unlinkat(view_fd, name.c_str(), 0);
    }
  }
  if (::symlinkat(view_link_target(e).c_str(), view_fd, e.id.c_str()) != 0 && errno != EEXIST) {
    return fail_errno("Failed to create " + quoted(std::string(k_user_view_dir) + "/…/" + e.id),
                      errno);
  }
  return {};
}

Expected<std::vector<ViewEntry>> read_user_view(int store_fd, uid_t uid, size_t& malformed) {
  const std::string rel = std::string(k_user_view_dir) + "/" + std::to_string(uid);
  auto dir = open_at(store_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    return std::unexpected(dir.error());
  }
  std::vector<std::string> names;
  if (auto listed = list_dir(dir->get(), [&](std::string_view n) { names.emplace_back(n); });
      !listed) {
    return std::unexpected(listed.error());
  }
  std::vector<ViewEntry> out;
  char target[k_target_max + 1];
  for (const auto& name : names) {
    const ssize_t n = ::readlinkat(dir->get(), name.c_str(), target, k_target_max);
    if (n < 0) {
      ++malformed;
      continue;
    }
    auto entry = parse_view_link(name, std::string_view(target, static_cast<size_t>(n)));
    if (!entry) {
      ++malformed;
      continue;
    }
    out.push_back(std::move(*entry));
  }
  return out;
}

} // namespace common
