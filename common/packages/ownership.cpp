// Package ownership of mapped files, read from the crashed root's own databases.
#include "common/packages/ownership.hpp"

#include "common/base/io.hpp"
#include "common/base/json_bounds.hpp"
#include "common/packages/dpkg_index.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace common {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* k_dpkg_info = "/var/lib/dpkg/info";
constexpr const char* k_dpkg_status = "/var/lib/dpkg/status";
constexpr size_t k_max_package_json = size_t{1} << 20;

// The running total of one lookup's bounds.
struct Budget {
  const OwnershipLimits& limits;
  Clock::time_point deadline;
  size_t bytes = 0;
  size_t files = 0;
  std::string exhausted; // which bound ran out first

  bool spent() {
    if (exhausted.empty() && Clock::now() >= deadline) {
      exhausted = "time budget";
    }
    return !exhausted.empty();
  }
  // How much the next file may hold, 0 when nothing is left.
  size_t allowance(size_t per_file) {
    if (spent()) {
      return 0;
    }
    if (bytes >= limits.max_bytes) {
      exhausted = "byte budget";
      return 0;
    }
    if (++files > limits.max_lists) {
      exhausted = "file count budget";
      return 0;
    }
    return std::min(per_file, limits.max_bytes - bytes);
  }
};

// The contents of the regular file `fd`, at most `limit` bytes (more is an error with errno EFBIG).
Expected<std::string> read_regular(int fd, const std::string& path, size_t limit) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return fail_errno("Failed to stat '" + path + "'", errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail_errno("'" + path + "' is not a regular file", EINVAL);
  }
  if (static_cast<uint64_t>(st.st_size) > limit) {
    return fail_errno("'" + path + "' is larger than " + std::to_string(limit) + " bytes", EFBIG);
  }
  return read_fd(fd, path, limit);
}

// A regular file inside `root`, at most `limit` bytes (more is an error with errno EFBIG).
Expected<std::string> read_in_root(int root, const std::string& path, size_t limit) {
  auto fd = open_in_root(root, path, O_RDONLY | O_NONBLOCK);
  if (!fd) {
    return std::unexpected(fd.error());
  }
  return read_regular(fd->get(), path, limit);
}

// Calls `fn` for each line of `text` (without its newline).
template <typename Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    fn(text.substr(0, nl));
    if (nl == std::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
  }
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

struct Installed {
  std::string version;
  std::string arch;
};

// dpkg's status file: the version and architecture of every installed package, by "name" and
// "name:arch" (the names of multi-arch .list files).
std::unordered_map<std::string, Installed> read_status(std::string_view text) {
  std::unordered_map<std::string, Installed> out;
  std::string package;
  Installed cur;
  bool installed = false;
  auto flush = [&] {
    if (!package.empty() && installed) {
      out[package + ":" + cur.arch] = cur;
      out.try_emplace(package, cur);
    }
    package.clear();
    cur = {};
    installed = false;
  };
  for_each_line(text, [&](std::string_view line) {
    if (line.empty()) {
      flush();
      return;
    }
    auto value = [&](std::string_view key) -> std::optional<std::string_view> {
      if (line.size() > key.size() && line.substr(0, key.size()) == key &&
          line[key.size()] == ':') {
        std::string_view v = line.substr(key.size() + 1);
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
          v.remove_prefix(1);
        }
        return v;
      }
      return std::nullopt;
    };
    if (auto v = value("Package")) {
      package = std::string(*v);
    } else if (auto v2 = value("Version")) {
      cur.version = std::string(*v2);
    } else if (auto v3 = value("Architecture")) {
      cur.arch = std::string(*v3);
    } else if (auto v4 = value("Status")) {
      // "install ok installed", "hold ok installed"; half-installed or config-files packages
      // do not own what is on disk.
      installed = ends_with(*v4, " installed");
    }
  });
  flush();
  return out;
}

std::string ns(const struct timespec& t) {
  return std::to_string(static_cast<long long>(t.tv_sec) * 1000000000LL + t.tv_nsec);
}

std::string id(const struct stat& st) {
  return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino);
}

// The root's dpkg database as one lookup sees it.
struct DpkgDb {
  UniqueFd status;
  UniqueFd info;
  // The index's key: the root's identity and the device, inode, size and modification and
  // change times of `status` and of the `info/` directory. dpkg replaces `status` and every
  // .list file by rename, so each of its changes gives another key (change times cannot be set
  // back); the root's identity gives a container's database keys of its own. A .list rewritten
  // in place by something other than dpkg is not seen until the directory changes: only the
  // root's own administrator can do that, and a stat of every .list would cost three times the
  // rest of a warm lookup.
  std::string key;
};

std::optional<DpkgDb> open_dpkg(int root, const OwnershipLimits& limits, Ownership& out) {
  DpkgDb db;
  struct stat root_st {};
  struct stat status_st {};
  struct stat info_st {};
  auto status = open_in_root(root, k_dpkg_status, O_RDONLY | O_NONBLOCK);
  if (!status || ::fstat(root, &root_st) != 0 || ::fstat(status->get(), &status_st) != 0) {
    return std::nullopt; // no dpkg database: not a Debian root
  }
  out.dpkg_state = "status " + std::to_string(status_st.st_size) + " " + ns(status_st.st_mtim);
  db.status = std::move(*status);
  auto info = open_in_root(root, k_dpkg_info, O_RDONLY | O_DIRECTORY);
  if (!info || ::fstat(info->get(), &info_st) != 0) {
    out.note +=
        "dpkg info not read: " + (info ? std::string("fstat failed") : info.error().message) + "; ";
    return std::nullopt;
  }
  out.dpkg_state += ", info " + ns(info_st.st_mtim);
  db.info = std::move(*info);
  db.key = "dpkg index 1\nroot " + id(root_st) + "\nstatus " + id(status_st) + " " +
           std::to_string(status_st.st_size) + " " + ns(status_st.st_mtim) + " " +
           ns(status_st.st_ctim) + "\ninfo " + id(info_st) + " " + ns(info_st.st_mtim) + " " +
           ns(info_st.st_ctim) + "\nlimits " + std::to_string(limits.max_lists) + " " +
           std::to_string(limits.max_list_bytes) + "\n";
  return db;
}

// Reads every .list of the database into an index. `whole` says whether it holds all of it
// (no bound ran out, no list failed but for a reason that lasts as long as the key: too large,
// a link, not a regular file), and so may be kept.
DpkgIndex build_dpkg_index(DpkgDb& db, Budget& budget, Ownership& out, bool& whole) {
  DpkgIndex index;
  std::vector<std::string> lists;
  bool too_many = false;
  (void)list_dir(db.info.get(), [&](std::string_view name) {
    if (ends_with(name, ".list")) {
      if (lists.size() < budget.limits.max_lists) {
        lists.emplace_back(name);
      } else {
        too_many = true;
      }
    }
  });
  // Sorted: the order in which lists own a path must not depend on the directory's hash order.
  std::sort(lists.begin(), lists.end());
  whole = !too_many;
  auto status_text =
      read_regular(db.status.get(), k_dpkg_status, budget.allowance(budget.limits.max_bytes));
  if (!status_text) {
    out.note += "dpkg status not read: " + status_text.error().message + "; ";
    whole = false;
    return index;
  }
  budget.bytes += status_text->size();
  const auto installed = read_status(*status_text);
  status_text->clear();
  for (const auto& name : lists) {
    const size_t allowance = budget.allowance(budget.limits.max_list_bytes);
    if (allowance == 0) {
      whole = false;
      break;
    }
    // A single component under info/ (opened inside the root): nothing to resolve on the way.
    auto text = read_in_root(db.info.get(), name, allowance);
    if (!text) {
      // An oversized list, a link or a non-regular file owns nothing, now as on every later
      // read of this state; any other failure may pass, so the result is not kept.
      const int err = text.error().sys_errno;
      const bool lasting = (err == EFBIG && allowance == budget.limits.max_list_bytes) ||
                           err == ELOOP || err == EINVAL;
      whole = whole && lasting;
      continue;
    }
    budget.bytes += text->size();
    const std::string list_name = name.substr(0, name.size() - 5);
    IndexedPackage p;
    p.name = list_name.substr(0, list_name.find(':'));
    if (auto it = installed.find(list_name); it != installed.end()) {
      p.version = it->second.version;
      p.arch = it->second.arch;
    }
    const uint32_t number = index.add_package(std::move(p));
    for_each_line(*text, [&](std::string_view line) {
      if (!line.empty() && line.front() == '/' && !index.add_path(usr_merge_view(line), number)) {
        whole = false;
      }
    });
  }
  if (too_many && budget.exhausted.empty()) {
    budget.exhausted = "file count budget";
  }
  index.finish();
  return index;
}

// The owners dpkg's database names: from the index kept for its state, or read from the .list
// files (and kept for the next crash when `index_dir` is given).
void lookup_dpkg(int root, int index_dir, const std::vector<std::string>& paths,
                 std::vector<std::optional<Owner>>& found, Budget& budget, Ownership& out) {
  auto db = open_dpkg(root, budget.limits, out);
  if (!db) {
    return;
  }
  std::optional<DpkgIndex> index;
  if (index_dir >= 0) {
    if (auto loaded = load_dpkg_index(index_dir, db->key)) {
      index = std::move(*loaded);
      out.dpkg_index = "used";
    } else if (loaded.error().sys_errno != ENOENT) {
      out.note += loaded.error().message + ", rebuilt; ";
    }
  }
  if (!index) {
    if (index_dir >= 0) {
      // Once per root and database state: the rest of this lookup may take the longer budget.
      budget.deadline = std::max(budget.deadline, budget.deadline - budget.limits.budget +
                                                      budget.limits.index_budget);
    }
    bool whole = false;
    index = build_dpkg_index(*db, budget, out, whole);
    if (index_dir >= 0 && whole) {
      auto saved = save_dpkg_index(index_dir, db->key, *index);
      out.dpkg_index = saved ? "built" : "not kept: " + saved.error().message;
    } else if (index_dir >= 0) {
      out.dpkg_index = "not kept: the database was not read in full";
    }
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    if (found[i]) {
      continue;
    }
    if (const IndexedPackage* p = index->find(usr_merge_view(paths[i]))) {
      found[i] = Owner{paths[i], p->name, p->version, p->arch, OwnerSource::dpkg};
    }
  }
}

// "<site>/pkg/mod.py" → ("<site>/", "pkg/mod.py") for site-packages and dist-packages.
std::optional<std::pair<std::string, std::string>> split_site(const std::string& path) {
  for (const std::string_view marker : {"/site-packages/", "/dist-packages/"}) {
    const size_t at = path.rfind(marker);
    if (at != std::string::npos && at + marker.size() < path.size()) {
      return std::pair{path.substr(0, at + marker.size()), path.substr(at + marker.size())};
    }
  }
  return std::nullopt;
}

// "name-1.2.3.dist-info" → name, version (names never hold '-' there: wheels escape it to '_').
std::pair<std::string, std::string> split_dist_info(std::string_view dir) {
  dir.remove_suffix(std::string_view(".dist-info").size());
  const size_t dash = dir.find('-');
  if (dash == std::string_view::npos) {
    return {std::string(dir), ""};
  }
  return {std::string(dir.substr(0, dash)), std::string(dir.substr(dash + 1))};
}

// The first field of a RECORD line (CSV: a path with a comma is quoted, quotes doubled).
std::string record_path(std::string_view line) {
  if (line.empty() || line.front() != '"') {
    return std::string(line.substr(0, line.find(',')));
  }
  std::string out;
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '"') {
      if (i + 1 < line.size() && line[i + 1] == '"') {
        out += '"';
        ++i;
        continue;
      }
      break;
    }
    out += line[i];
  }
  return out;
}

void lookup_python(int root, const std::vector<std::string>& paths,
                   std::vector<std::optional<Owner>>& found, Budget& budget) {
  // site directory → relative path → indices of the paths asked for
  std::map<std::string, std::unordered_map<std::string, std::vector<size_t>>> by_site;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!found[i]) {
      if (auto s = split_site(paths[i])) {
        by_site[s->first][s->second].push_back(i);
      }
    }
  }
  for (auto& entry : by_site) {
    const std::string& site = entry.first;
    auto& wanted = entry.second; // not a binding: clang before 16 cannot capture one
    auto dir = open_in_root(root, site, O_RDONLY | O_DIRECTORY);
    if (!dir || budget.spent()) {
      continue;
    }
    std::vector<std::string> dists;
    (void)list_dir(dir->get(), [&](std::string_view name) {
      if (ends_with(name, ".dist-info") && dists.size() <= budget.limits.max_lists) {
        dists.emplace_back(name);
      }
    });
    for (const auto& dist : dists) {
      const size_t allowance = budget.allowance(budget.limits.max_list_bytes);
      if (allowance == 0) {
        return;
      }
      auto text = read_in_root(root, site + dist + "/RECORD", allowance);
      if (!text) {
        continue;
      }
      budget.bytes += text->size();
      // Not a structured binding: clang before 16 cannot capture one in the lambda below.
      const std::pair<std::string, std::string> dist_name = split_dist_info(dist);
      const std::string& name = dist_name.first;
      const std::string& version = dist_name.second;
      for_each_line(*text, [&](std::string_view line) {
        auto it = wanted.find(record_path(line));
        if (it == wanted.end()) {
          return;
        }
        for (const size_t i : it->second) {
          if (!found[i]) {
            found[i] = Owner{paths[i], name, version, "", OwnerSource::python};
          }
        }
      });
    }
  }
}

// ".../gems/<name>-<version>/..." : the version starts after the last '-' before a digit
// ("nokogiri-1.15.4-x86_64-linux" is nokogiri 1.15.4-x86_64-linux).
std::optional<Owner> gem_owner(const std::string& path) {
  const size_t at = path.rfind("/gems/");
  if (at == std::string::npos) {
    return std::nullopt;
  }
  const size_t start = at + 6;
  const size_t end = path.find('/', start);
  if (end == std::string::npos) {
    return std::nullopt;
  }
  const std::string_view dir = std::string_view(path).substr(start, end - start);
  size_t split = std::string_view::npos;
  for (size_t i = 1; i + 1 < dir.size(); ++i) {
    if (dir[i] == '-' && dir[i + 1] >= '0' && dir[i + 1] <= '9') {
      split = i;
    }
  }
  if (split == std::string_view::npos) {
    return std::nullopt;
  }
  return Owner{path, std::string(dir.substr(0, split)), std::string(dir.substr(split + 1)), "",
               OwnerSource::gem};
}

// ".../node_modules/<pkg>/..." or ".../node_modules/@scope/<pkg>/...": the package directory.
std::optional<std::string> npm_dir(const std::string& path) {
  const std::string_view marker = "/node_modules/";
  const size_t at = path.rfind(marker);
  if (at == std::string::npos) {
    return std::nullopt;
  }
  size_t end = path.find('/', at + marker.size());
  if (end != std::string::npos && path[at + marker.size()] == '@') {
    end = path.find('/', end + 1);
  }
  if (end == std::string::npos) {
    return std::nullopt;
  }
  return path.substr(0, end);
}

void lookup_npm(int root, const std::vector<std::string>& paths,
                std::vector<std::optional<Owner>>& found, Budget& budget) {
  std::map<std::string, std::optional<std::pair<std::string, std::string>>> seen;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (found[i]) {
      continue;
    }
    const auto dir = npm_dir(paths[i]);
    if (!dir) {
      continue;
    }
    auto [it, fresh] = seen.try_emplace(*dir);
    if (fresh) {
      const size_t allowance = budget.allowance(k_max_package_json);
      if (allowance == 0) {
        return;
      }
      auto text = read_in_root(root, *dir + "/package.json", allowance);
      if (!text) {
        continue;
      }
      budget.bytes += text->size();
      // A hostile package.json must not exhaust the stack or memory of the JSON parser.
      if (!json_bounds_error(*text, allowance, k_max_json_depth).empty()) {
        continue;
      }
      const auto j = nlohmann::json::parse(*text, nullptr, false);
      if (j.is_object() && j.contains("name") && j["name"].is_string() && j.contains("version") &&
          j["version"].is_string()) {
        it->second = std::pair{j["name"].get<std::string>(), j["version"].get<std::string>()};
      }
    }
    if (it->second) {
      found[i] = Owner{paths[i], it->second->first, it->second->second, "", OwnerSource::npm};
    }
  }
}

} // namespace

std::string_view to_string(OwnerSource s) {
  switch (s) {
  case OwnerSource::dpkg:
    return "dpkg";
  case OwnerSource::python:
    return "python";
  case OwnerSource::gem:
    return "gem";
  case OwnerSource::npm:
    return "npm";
  }
  return "dpkg";
}

Expected<UniqueFd> open_in_root(int root, const std::string& path, int flags) {
  struct open_how how {};
  how.flags = static_cast<__u64>(static_cast<unsigned>(flags | O_CLOEXEC | O_NOCTTY));
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = -1;
  do {
    fd = ::syscall(SYS_openat2, root, path.c_str(), &how, sizeof how);
  } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
  if (fd < 0) {
    return fail_errno("Failed to open '" + path + "' in the crashed root", errno);
  }
  return UniqueFd(static_cast<int>(fd));
}

std::string_view usr_merge_view(std::string_view path) {
  std::string_view rest = path;
  if (rest.substr(0, 5) == "/usr/") {
    rest.remove_prefix(4);
  }
  for (const std::string_view dir :
       {"/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/"}) {
    if (rest.substr(0, dir.size()) == dir) {
      return rest;
    }
  }
  return path;
}

std::string usr_merge_key(std::string_view path) {
  return std::string(usr_merge_view(path));
}

Ownership find_owners(int root, const std::vector<std::string>& asked,
                      const OwnershipLimits& limits, int index_dir) {
  const auto start = Clock::now();
  Ownership out;
  std::vector<std::string> paths;
  std::set<std::string> unique;
  for (const auto& p : asked) {
    if (p.empty() || p.front() != '/' || !unique.insert(p).second) {
      continue;
    }
    if (paths.size() == limits.max_paths) {
      out.complete = false;
      out.note += "only the first " + std::to_string(limits.max_paths) + " paths looked up; ";
      break;
    }
    paths.push_back(p);
  }
  Budget budget{limits, start + limits.budget, 0, 0, {}};
  std::vector<std::optional<Owner>> found(paths.size());
  if (root >= 0) {
    lookup_dpkg(root, index_dir, paths, found, budget, out);
    lookup_python(root, paths, found, budget);
    lookup_npm(root, paths, found, budget);
  }
  // Gems are named by their directory alone: a library copied out of a gem is still the gem's.
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!found[i]) {
      found[i] = gem_owner(paths[i]);
    }
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    if (found[i]) {
      out.owners.push_back(std::move(*found[i]));
    } else {
      out.unowned.push_back(paths[i]);
    }
  }
  if (!budget.exhausted.empty()) {
    out.complete = false;
    out.note += budget.exhausted + " ran out; ";
  }
  if (out.note.size() >= 2) {
    out.note.resize(out.note.size() - 2);
  }
  out.elapsed_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
  return out;
}

} // namespace common
