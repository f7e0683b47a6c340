#include "common/store/retention.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/store/acl.hpp"
#include "common/store/record.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <queue>
#include <set>
#include <tuple>

namespace common {

namespace {

bool older(const RetentionEntry& a, const RetentionEntry& b) {
  return std::tie(a.time, a.id) < std::tie(b.time, b.id);
}

// Whose crash an entry is, as eviction orders users: a record without a uid is one user of its
// own, after every known uid.
using UserKey = std::pair<bool, int64_t>;

// One (host, exe) of a user: its candidates oldest first, and the next one to take.
struct Head {
  size_t remaining;
  const RetentionEntry* oldest;
  const std::vector<size_t>* items;
  size_t next;
};

// The heap's top is the group to take from: most entries, then oldest entry, then name.
struct HeadAfter {
  bool operator()(const Head& a, const Head& b) const {
    if (a.remaining != b.remaining) {
      return a.remaining < b.remaining;
    }
    if (a.oldest->time != b.oldest->time) {
      return a.oldest->time > b.oldest->time;
    }
    return std::tie(a.oldest->host, a.oldest->exe) > std::tie(b.oldest->host, b.oldest->exe);
  }
};

struct User {
  uint64_t bytes = 0; // weight of the candidates left
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> groups;
  std::priority_queue<Head, std::vector<Head>, HeadAfter> heap;
};

// Takes entries among `candidates` (oldest first) while `over()` names a cause: each time the
// oldest entry of the (host, exe) with the most candidates left, of the user whose candidates
// weigh the most bytes (`weight`); equal users go by uid. See the header for why.
template <typename Weight, typename Over, typename Take>
void evict(const std::vector<RetentionEntry>& entries, const std::vector<size_t>& candidates,
           const Weight& weight, const Over& over, const Take& take) {
  std::map<UserKey, User> users;
  for (size_t i : candidates) {
    const RetentionEntry& e = entries[i];
    User& u = users[{!e.uid.has_value(), e.uid.value_or(0)}];
    u.bytes += weight(i);
    u.groups[{e.host, e.exe}].push_back(i);
  }
  using Rank = std::pair<uint64_t, UserKey>;
  auto heavier = [](const Rank& a, const Rank& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  std::set<Rank, decltype(heavier)> order(heavier);
  for (auto& [key, u] : users) {
    for (const auto& [name, items] : u.groups) {
      u.heap.push({items.size(), &entries[items.front()], &items, 0});
    }
    order.insert({u.bytes, key});
  }
  while (!order.empty()) {
    const auto cause = over();
    if (!cause) {
      break;
    }
    const UserKey key = order.begin()->second;
    order.erase(order.begin());
    User& u = users.at(key);
    Head h = u.heap.top();
    u.heap.pop();
    const size_t i = (*h.items)[h.next];
    take(i, *cause);
    u.bytes -= weight(i);
    if (--h.remaining > 0) {
      ++h.next;
      h.oldest = &entries[(*h.items)[h.next]];
      u.heap.push(h);
    }
    if (!u.heap.empty()) {
      order.insert({u.bytes, key});
    }
  }
}

// Replaces record `name` (open as `old_fd`, described by `st`) with `text` atomically, on a new
// inode with the old one's owner, group, mode and access ACL.
Expected<void> replace_record(int dfd, const std::string& name, const std::string& path, int old_fd,
                              const struct stat& st, const std::string& text) {
  auto file = AtomicFile::create(dfd, name, st.st_mode & 07777);
  if (!file) {
    return std::unexpected(file.error());
  }
  // The new file is its creator's: the same as the record's when the store user vacuums (the
  // hourly unit), so no fchown() is needed, and none is made. Root's own vacuum must hand the
  // record back to the store user, whose exporter reads it.
  struct stat now {};
  if (::fstat(file->fd(), &now) != 0) {
    return fail_errno("Failed to stat the new copy of " + quoted(path), errno);
  }
  if ((now.st_uid != st.st_uid || now.st_gid != st.st_gid) &&
      ::fchown(file->fd(), st.st_uid, st.st_gid) != 0) {
    return fail_errno("Failed to keep the owner of " + quoted(path), errno);
  }
  if (::fchmod(file->fd(), st.st_mode & 07777) != 0) {
    return fail_errno("Failed to keep the mode of " + quoted(path), errno);
  }
  // And who else may read it: the crashing user's ACL (set by the handler) must survive.
  if (auto a = copy_access_acl(old_fd, file->fd()); !a) {
    return fail("Failed to keep the ACL of " + quoted(path) + ": " + a.error().message);
  }
  if (auto w = file->write(text); !w) {
    return w;
  }
  return file->commit(Replace::yes);
}

// Overwrites record `name` with `text` on its own inode, which keeps owner, group, mode and ACL
// without a privileged call. Not atomic: a reader may see the file mid-write (the exporter and
// corectl count such a file unreadable and read it again), and a power loss inside the write
// can leave it torn. So it is the fallback, only for what replace_record() cannot keep.
Expected<void> rewrite_in_place(int dfd, const std::string& name, const std::string& path,
                                const struct stat& st, const std::string& text) {
  auto fd = open_at(dfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    return fail("Failed to open " + quoted(path) + " for writing: " + fd.error().message);
  }
  struct stat now {};
  if (::fstat(fd->get(), &now) != 0) {
    return fail_errno("Failed to stat " + quoted(path), errno);
  }
  // The very file that was read and checked, and no other file's name for it: root writing
  // through a hard link the store user made would write wherever the link points.
  if (now.st_dev != st.st_dev || now.st_ino != st.st_ino || !S_ISREG(now.st_mode) ||
      now.st_nlink != 1) {
    return fail(quoted(path) + " changed or has other links, not writing it");
  }
  const auto* bytes = reinterpret_cast<const std::byte*>(text.data());
  if (auto w = write_all_at(fd->get(), {bytes, text.size()}, 0); !w) {
    return fail("Failed to write " + quoted(path) + ": " + w.error().message);
  }
  if (::ftruncate(fd->get(), static_cast<off_t>(text.size())) != 0) {
    return fail_errno("Failed to truncate " + quoted(path), errno);
  }
  return sync_fd(fd->get(), path);
}

} // namespace

std::string_view to_string(RemovalCause c) {
  switch (c) {
  case RemovalCause::max_records:
    return "max_records";
  case RemovalCause::asked:
    return "asked";
  case RemovalCause::max_record_age:
    return "max_record_age";
  case RemovalCause::max_use:
    return "max_use";
  case RemovalCause::keep_free:
    return "keep_free";
  }
  return "max_use";
}

RetentionPlan plan_retention(const Config& config, const std::vector<RetentionEntry>& entries,
                             const RetentionFacts& facts) {
  RetentionPlan plan;
  plan.max_use = config.max_use.resolve(facts.fs_total, k_percent_cap);
  plan.keep_free = config.keep_free.resolve(facts.fs_total, k_percent_cap);

  std::vector<size_t> by_age(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    by_age[i] = i;
    plan.core_bytes_before += image_bytes(entries[i]);
    plan.record_bytes_before += entries[i].record_bytes;
  }
  std::sort(by_age.begin(), by_age.end(),
            [&](size_t a, size_t b) { return older(entries[a], entries[b]); });

  uint64_t core_bytes = plan.core_bytes_before;
  uint64_t record_bytes = plan.record_bytes_before;
  uint64_t available = facts.fs_available;
  std::vector<bool> gone(entries.size(), false);      // record retired
  std::vector<bool> core_gone(entries.size(), false); // core removed or retired with it
  auto drop_core = [&](size_t i) {
    if (!core_gone[i]) {
      core_gone[i] = true;
      core_bytes -= image_bytes(entries[i]);
      available += image_bytes(entries[i]);
    }
  };
  auto retire = [&](size_t i, RemovalCause cause) {
    plan.retire.push_back({i, cause, entries[i].record_awaiting_upload});
    gone[i] = true;
    drop_core(i);
    record_bytes -= entries[i].record_bytes;
    available += entries[i].record_bytes;
  };

  // 1. Records beyond the count or the age, oldest first.
  const size_t excess = config.max_records > 0 && entries.size() > config.max_records
                            ? entries.size() - config.max_records
                            : 0;
  // A record still to upload is kept until it is (the next vacuum after that retires it), and
  // no newer record goes in its place: max_records keeps the newest.
  for (size_t k = 0; k < by_age.size(); ++k) {
    const size_t i = by_age[k];
    if (entries[i].record_awaiting_upload) {
      continue;
    }
    if (k < excess) {
      retire(i, RemovalCause::max_records);
    } else if (config.max_record_age > 0 &&
               entries[i].time + static_cast<int64_t>(config.max_record_age) < facts.now) {
      retire(i, RemovalCause::max_record_age);
    }
  }

  // 2. Cores, records kept; 3. records, once no core is left (see the header).
  auto over = [&]() -> std::optional<RemovalCause> {
    if (core_bytes + record_bytes > plan.max_use) {
      return RemovalCause::max_use;
    }
    if (available < plan.keep_free) {
      return RemovalCause::keep_free;
    }
    return std::nullopt;
  };
  // Each in two rounds: what is already uploaded (or never will be) first, and what is still to
  // upload only if the quota is still not met.
  for (const bool awaiting : {false, true}) {
    if (!over()) {
      break;
    }
    std::vector<size_t> cores;
    for (size_t i : by_age) {
      if (!gone[i] && !core_gone[i] && image_bytes(entries[i]) > 0 &&
          entries[i].core_awaiting_upload == awaiting) {
        cores.push_back(i);
      }
    }
    evict(
        entries, cores, [&](size_t i) { return image_bytes(entries[i]); }, over,
        [&](size_t i, RemovalCause cause) {
          plan.remove_cores.push_back({i, cause, awaiting});
          drop_core(i);
        });
  }
  for (const bool awaiting : {false, true}) {
    if (!over()) {
      break;
    }
    std::vector<size_t> records;
    for (size_t i : by_age) {
      if (!gone[i] && entries[i].record_awaiting_upload == awaiting) {
        records.push_back(i);
      }
    }
    evict(
        entries, records, [&](size_t i) { return entries[i].record_bytes; }, over, retire);
  }
  // Retiring a record removes its core too: no separate step for it.
  std::erase_if(plan.remove_cores, [&](const RetentionStep& s) { return gone[s.entry]; });
  plan.core_bytes_after = core_bytes;
  plan.record_bytes_after = record_bytes;
  return plan;
}

Expected<void> remove_core(const Store& store, const RetentionEntry& entry,
                           const std::string& removed_at, bool before_upload) {
  // Root runs this in a directory tree the store user owns: each component is opened without
  // following symlinks, and the record is read and checked through one descriptor, so nothing can
  // be swapped in between the check and the read. O_NONBLOCK: a FIFO must not hang vacuum.
  const std::string dir = entry.host + "/" + entry.exe;
  auto host_fd = open_at(store.fd(), entry.host, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  auto dir_fd = host_fd ? open_at(host_fd->get(), entry.exe, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                        : Expected<UniqueFd>(std::unexpected(host_fd.error()));
  if (!dir_fd) {
    return fail("Failed to open " + quoted(store.root() + "/" + dir) + ": " +
                dir_fd.error().message);
  }
  const int dfd = dir_fd->get();
  const std::string record_name = entry.id + std::string(k_record_suffix);
  const std::string core_name = entry.id + std::string(k_core_suffix);
  const std::string where = store.root() + "/" + dir + "/";

  auto old = open_at(dfd, record_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!old) {
    return fail("Failed to open record " + quoted(where + record_name) + ": " +
                old.error().message);
  }
  struct stat st {};
  if (::fstat(old->get(), &st) != 0) {
    return fail_errno("Failed to stat " + quoted(where + record_name), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail("Record " + quoted(where + record_name) +
                " is not a regular file, keeping its core");
  }
  auto text = read_fd(old->get(), where + record_name, k_max_record_bytes);
  if (!text) {
    return fail("Failed to read record " + quoted(where + record_name) + ": " +
                text.error().message);
  }
  // Edit the JSON itself rather than round-tripping a Record: fields this version does not know
  // (a newer handler's) must survive.
  auto parsed = parse_record_json(*text);
  if (!parsed || !parsed->is_object() || !parsed->contains("core") ||
      !(*parsed)["core"].is_object()) {
    return fail("Malformed record " + quoted(where + record_name) + ", keeping its core");
  }
  nlohmann::json& j = *parsed;
  // The report's section says it is gone too, so that no reader looks for the file.
  const std::string report_name = entry.id + std::string(k_report_suffix);
  struct stat report_st {};
  const bool report_marked =
      ::fstatat(dfd, report_name.c_str(), &report_st, AT_SYMLINK_NOFOLLOW) != 0 ||
      !j.contains("runtime_report") || !j["runtime_report"].is_object() ||
      j["runtime_report"].contains("removed");
  // A report kept for a crash whose core was not (rate-limited, lean path) goes alone.
  const bool core_marked =
      j["core"].contains("removed") || (entry.core_bytes == 0 && entry.report_bytes > 0);
  if (!core_marked || !report_marked) {
    if (!core_marked) {
      j["core"]["removed"] = removed_at;
      if (before_upload) {
        j["core"]["removed_before_upload"] = true;
      }
    }
    if (!report_marked) {
      j["runtime_report"]["removed"] = removed_at;
    }
    const std::string out = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    auto replaced = replace_record(dfd, record_name, where + record_name, old->get(), st, out);
    if (!replaced) {
      // Keeping owner and ACL on a new file needs what a sandbox may deny: fchown() under
      // SystemCallFilter=~@chown when root rewrites the store user's file, or an ACL entry for
      // a uid that PrivateUsers= does not map (it reads back as nobody, and writing it fails
      // with EINVAL). The record's own inode already has both: write it there instead.
      if (auto in_place = rewrite_in_place(dfd, record_name, where + record_name, st, out);
          !in_place) {
        return fail(replaced.error().message + "; in place: " + in_place.error().message +
                    ", keeping its core");
      }
    }
  }
  if (::unlinkat(dfd, core_name.c_str(), 0) != 0 && errno != ENOENT) {
    return fail_errno("Failed to remove core " + quoted(where + core_name), errno);
  }
  // The runtime's report holds the process's memory too (registers, stacks): it goes with it.
  if (::unlinkat(dfd, report_name.c_str(), 0) != 0 && errno != ENOENT) {
    return fail_errno("Failed to remove runtime report " + quoted(where + report_name), errno);
  }
  return {};
}

Expected<OrphanSweep> remove_orphans(const Store& store, int64_t now, int64_t min_age,
                                     bool dry_run) {
  OrphanSweep out;
  Store::WalkEvents events;
  events.failed = [&](std::string_view, const Error& e) { out.failed.push_back(e); };
  auto walked = store.walk(
      {Store::Listing::all, {}, {}}, events,
      [&](std::string_view host, std::string_view exe, int dirfd) {
        // The temporaries are dot names: the whole directory is read.
        std::vector<std::string> names;
        const std::string rel = std::string(host) + "/" + std::string(exe);
        if (auto listed = list_dir(
                dirfd, [&](std::string_view n) { names.emplace_back(n); }, Hidden::include);
            !listed) {
          // Only names read before the failure are looked at: a core whose record was not
          // listed is not taken for an orphan, as the record's name is looked up among them.
          out.failed.push_back(
              Error::from_errno("Failed to list " + quoted(rel), listed.error().sys_errno));
        }
        std::sort(names.begin(), names.end());
        for (const std::string& name : names) {
          const bool temporary = name.starts_with(".#");
          // A core or a runtime report whose record is gone.
          const std::string_view suffix =
              name.ends_with(k_core_suffix) ? k_core_suffix : k_report_suffix;
          const bool core = name.ends_with(suffix) && !name.starts_with('.');
          if (!temporary && !core) {
            continue;
          }
          if (core) {
            const std::string record =
                name.substr(0, name.size() - suffix.size()) + std::string(k_record_suffix);
            if (std::binary_search(names.begin(), names.end(), record)) {
              continue;
            }
          }
          struct stat st {};
          if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
              !S_ISREG(st.st_mode) || now - st.st_mtime < min_age) {
            continue;
          }
          if (!dry_run && ::unlinkat(dirfd, name.c_str(), 0) != 0) {
            continue;
          }
          out.orphans.push_back({rel + "/" + name, static_cast<uint64_t>(st.st_blocks) * 512});
        }
      });
  if (!walked) {
    return std::unexpected(walked.error());
  }
  return out;
}

} // namespace common
