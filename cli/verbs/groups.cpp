// groups, resolve, unresolve: crash groups with a life. A group's state comes from its records
// (first crash, versions, crashes after a resolve mark) and the store's group files
// (common/packages/group_state: the resolve marks, and the exporter's seen-set, which keeps a
// group's first crash after retention removed its records). docs/groups.md has the rules.
#include "cli/context.hpp"
#include "cli/output/render.hpp"
#include "cli/verbs/select.hpp"
#include "cli/verbs/verbs.hpp"
#include "common/base/io.hpp"
#include "common/packages/group_state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <thread>

namespace cli {

namespace {

using nlohmann::json;

// Records read in full per group: for the versions, the newest this many; for a regression, at
// most this many after the resolve mark (newest first: a regression is usually the latest crash).
constexpr size_t k_version_records = 32;
constexpr size_t k_after_mark_records = 256;
// The versions shown per group.
constexpr size_t k_max_versions = 16;
// Groups whose records are read at once.
constexpr size_t k_life_threads = 4;

// The group files, read once; a broken one is reported once and left out (the records still
// give every group a state).
struct GroupFiles {
  common::Marks marks;
  common::Seen seen;
};

GroupFiles read_group_files(const common::Store& store, bool quiet) {
  GroupFiles files;
  // Both files are readable by the store's group; a user outside it sees the states of the
  // records they can read, without marks.
  if (auto m = common::read_marks(store.fd()); !m) {
    if (m.error().sys_errno != EACCES) {
      report(Exit::failure, "Ignoring the resolve marks: " + m.error().message);
    }
  } else if (*m) {
    files.marks = std::move(**m);
  }
  if (auto s = common::read_seen(store.fd()); !s) {
    if (s.error().sys_errno != EACCES && !quiet) {
      report(Exit::failure, "Ignoring the seen-set: " + s.error().message);
    }
  } else if (*s) {
    files.seen = std::move(**s);
  }
  return files;
}

std::string refines_of(const json& record) {
  auto c = record.find("crash");
  if (c == record.end() || !c->is_object()) {
    return {};
  }
  auto r = c->find("signature_refines");
  return r != c->end() && r->is_string() ? r->get<std::string>() : std::string();
}

struct Life {
  std::string parent; // the group it continues (crash.signature_refines)
  std::vector<common::CrashVersion> versions;
  bool regressed = false;
};

// Reads what a group's state needs from its records: `crashes` oldest first.
Life read_life(Context& ctx, const std::vector<const Crash*>& crashes,
               const common::ResolveMark* mark) {
  Life life;
  size_t read = 0;
  for (auto it = crashes.rbegin(); it != crashes.rend() && read < k_version_records; ++it, ++read) {
    auto full = read_record(ctx, {(*it)->host_dir, (*it)->exe_dir, (*it)->id});
    if (!full) {
      continue; // list and info report unreadable records; the group keeps the others
    }
    if (life.parent.empty()) {
      life.parent = refines_of(full->json);
    }
    common::CrashVersion v = common::crash_version(full->json);
    if (!v.packages.empty() || !v.build_id.empty()) {
      if (std::ranges::find(life.versions, v) == life.versions.end()) {
        life.versions.insert(life.versions.begin(), std::move(v));
      }
    }
  }
  if (mark == nullptr) {
    return life;
  }
  read = 0;
  for (auto it = crashes.rbegin();
       it != crashes.rend() && (*it)->time > mark->time && read < k_after_mark_records; ++it) {
    auto full = read_record(ctx, {(*it)->host_dir, (*it)->exe_dir, (*it)->id});
    ++read;
    if (full && common::regresses(*mark, common::crash_version(full->json))) {
      life.regressed = true;
      break;
    }
  }
  return life;
}

// The mark that applies to a group: its own, else the one of the group it continues.
const common::ResolveMark* mark_of(const GroupFiles& files, const std::string& key,
                                   const std::string& parent) {
  if (auto it = files.marks.by_group.find(key); it != files.marks.by_group.end()) {
    return &it->second;
  }
  if (auto it = files.marks.by_group.find(parent);
      !parent.empty() && it != files.marks.by_group.end()) {
    return &it->second;
  }
  return nullptr;
}

int64_t earliest(int64_t a, int64_t b) {
  return a <= 0 ? b : b <= 0 ? a : std::min(a, b);
}

// Only root and the store's owner write the store's group files (the exporter, as the store
// user, writes the seen-set; users only read).
Exit may_write(const common::Store& store) {
  struct stat st {};
  if (::fstat(store.fd(), &st) != 0) {
    return report(Exit::failure, "Failed to stat the store: " + std::string(std::strerror(errno)));
  }
  if (::geteuid() != 0 && ::geteuid() != st.st_uid) {
    return report(Exit::denied,
                  "Only root or the store's owner may mark groups (resolve, unresolve)");
  }
  return Exit::ok;
}

// The group the word names: a group key, a signature or a unique signature prefix (4 or more
// characters), among the store's groups.
std::expected<Group, Exit> find_group(const std::vector<Group>& groups, const std::string& word) {
  std::vector<const Group*> hits;
  for (const Group& g : groups) {
    if (g.key == word) {
      return g;
    }
    if (word.size() >= 4 && !g.signature.empty() && g.signature.starts_with(word)) {
      hits.push_back(&g);
    }
  }
  if (hits.size() == 1) {
    return *hits.front();
  }
  if (hits.empty()) {
    return std::unexpected(
        report(Exit::not_found, "No crash group '" + printable(word.substr(0, 64)) + "'"));
  }
  return std::unexpected(report(Exit::usage, "'" + printable(word) + "' names " +
                                                 std::to_string(hits.size()) +
                                                 " groups; give more of the signature"));
}

// Read-modify-write of the marks under an exclusive lock on the store root's `.groups/`: two
// resolves at once must not lose one.
template <typename F>
Exit update_marks(const common::Store& store, F change) {
  if (::mkdirat(store.fd(), common::k_groups_dir, 0750) != 0 && errno != EEXIST) {
    return report(Exit::failure, "Failed to create '" + store.root() + "/" + common::k_groups_dir +
                                     "': " + std::strerror(errno));
  }
  auto dir = common::open_at(store.fd(), common::k_groups_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    return report(Exit::failure, dir.error().message);
  }
  if (::flock(dir->get(), LOCK_EX) != 0) {
    return report(Exit::failure, "Failed to lock '" + store.root() + "/" + common::k_groups_dir +
                                     "': " + std::strerror(errno));
  }
  auto marks = common::read_marks(store.fd());
  if (!marks) {
    // Refuse rather than replace: the file may hold marks we could not read.
    return report(Exit::failure, "Not changing the resolve marks: " + marks.error().message);
  }
  common::Marks m = marks->value_or(common::Marks{});
  if (Exit e = change(m); e != Exit::ok) {
    return e;
  }
  if (auto w = common::write_marks(store.fd(), m); !w) {
    return report(Exit::failure, "Failed to write the resolve marks: " + w.error().message);
  }
  return Exit::ok;
}

} // namespace

Exit cmd_groups(Context& ctx) {
  auto cat = load_selected(ctx);
  if (!cat) {
    return cat.error();
  }
  auto groups = group_crashes(cat->crashes);
  limit_and_order(groups, ctx.opts);
  if (groups.empty()) {
    return nothing_matched(ctx.opts);
  }
  std::map<std::string, std::vector<const Crash*>> members;
  std::map<std::string, int64_t> first_of;
  for (const Crash& c : cat->crashes) {
    const std::string key = common::group_key(c.signature, c.executable, c.signal);
    members[key].push_back(&c);
    first_of.try_emplace(key, c.time);
  }
  // A bucket holds every node's group files, merged (docs/groups.md#several-hosts).
  GroupFiles files;
  if (ctx.remote) {
    auto remote = ctx.remote->load_group_files();
    files = {std::move(remote.marks), std::move(remote.seen)};
  } else {
    files = read_group_files(*ctx.store, ctx.opts.quiet);
  }
  const int64_t now = ::time(nullptr);
  const auto window = static_cast<int64_t>(
      std::min<uint64_t>(ctx.config.new_group_window, static_cast<uint64_t>(INT64_MAX)));
  // Each group's life from its records, a few groups at a time on a store (a group reads up to
  // k_version_records whole records: cold, the reads dominate). A bucket's client is one
  // connection: one group at a time there.
  std::vector<Life> lives(groups.size());
  {
    std::atomic<size_t> next{0};
    auto work = [&] {
      static const std::vector<const Crash*> none;
      for (size_t i = next++; i < groups.size(); i = next++) {
        const auto m = members.find(groups[i].key); // no insertion: shared between threads
        lives[i] = read_life(ctx, m != members.end() ? m->second : none,
                             mark_of(files, groups[i].key, {}));
      }
    };
    const size_t threads =
        ctx.remote ? 1
                   : std::min<size_t>({k_life_threads, groups.size(),
                                       std::max(1U, std::thread::hardware_concurrency())});
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) {
      pool.emplace_back(work);
    }
    work();
    for (auto& t : pool) {
      t.join();
    }
  }
  std::vector<json> marks_json;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    Group& g = groups[gi];
    // The parent's mark is only known once the records named it: read first with the group's
    // own mark, again when the parent has one.
    const common::ResolveMark* own = mark_of(files, g.key, {});
    Life& life = lives[gi];
    const common::ResolveMark* mark = mark_of(files, g.key, life.parent);
    if (mark != own) {
      life = read_life(ctx, members[g.key], mark);
    }
    // The first crash: the records', the seen-set's (kept after retention), and for a group that
    // continues an older one, the older one's.
    int64_t first = g.first;
    if (auto s = files.seen.groups.find(g.key); s != files.seen.groups.end()) {
      first = earliest(first, s->second.first);
    }
    if (!life.parent.empty()) {
      if (auto p = first_of.find(life.parent); p != first_of.end()) {
        first = earliest(first, p->second);
      }
      if (auto s = files.seen.groups.find(life.parent); s != files.seen.groups.end()) {
        first = earliest(first, s->second.first);
      }
    }
    g.first = first;
    g.state = std::string(
        common::to_string(common::group_state(first, now, window, mark, life.regressed)));
    for (const auto& v : life.versions) {
      if (g.versions.size() < k_max_versions) {
        g.versions.push_back(common::describe_version(v));
      }
    }
    g.resolved_in = mark != nullptr ? common::describe_mark(*mark) : std::string();
    json m = nullptr;
    if (mark != nullptr) {
      m = {
          {"in", g.resolved_in}, {"time", common::format_time(mark->time)}, {"group", mark->group}};
    }
    marks_json.push_back(std::move(m));
    g.continues = life.parent;
  }
  if (ctx.opts.json != JsonMode::off) {
    for (size_t i = 0; i < groups.size(); ++i) {
      const Group& g = groups[i];
      print_json(
          {
              {"signature", g.signature.empty() ? json(nullptr) : json(g.signature)},
              // Without a signature, crashes group by executable and signal: say so explicitly.
              {"grouped_by", g.signature.empty() ? "executable+signal" : "signature"},
              {"group", g.key},
              {"state", g.state},
              {"count", g.count},
              {"first", common::format_time(g.first)},
              {"last", common::format_time(g.last)},
              {"last_id", g.last_id},
              {"hosts", g.hosts},
              {"executables", g.executables},
              {"signal", g.signal},
              {"signal_name", g.signal_name},
              {"site", g.site.empty() ? json(nullptr) : json(g.site)},
              {"versions", g.versions},
              {"resolved", marks_json[i]},
              {"continues", g.continues.empty() ? json(nullptr) : json(g.continues)},
          },
          ctx.opts.json == JsonMode::pretty);
    }
    return Exit::ok;
  }
  print_groups(ctx.term, groups, legend_of(ctx.opts));
  return Exit::ok;
}

Exit cmd_resolve(Context& ctx) {
  if (Exit e = may_write(*ctx.store); e != Exit::ok) {
    return e;
  }
  common::ResolveMark mark;
  if (ctx.opts.resolve_in) {
    auto parsed = common::parse_resolve_target(*ctx.opts.resolve_in);
    if (!parsed) {
      return report(Exit::usage, parsed.error().message);
    }
    mark = std::move(*parsed);
  }
  auto cat = load_catalog(*ctx.store, Filter{});
  const auto groups = group_crashes(cat.crashes);
  auto group = find_group(groups, ctx.opts.matches.at(0));
  if (!group) {
    return group.error();
  }
  mark.group = group->key;
  mark.time = ::time(nullptr);
  mark.uid = ::geteuid();
  if (mark.package.empty()) {
    // A build-id mark remembers the builds the group crashed with so far: a later crash of one
    // of them is an old build still running somewhere, not the fix failing.
    std::set<std::string> builds;
    for (const Crash& c : cat.crashes) {
      if (common::group_key(c.signature, c.executable, c.signal) != mark.group) {
        continue;
      }
      auto full = read_record(*ctx.store, {c.host_dir, c.exe_dir, c.id});
      if (!full) {
        continue;
      }
      const std::string id = common::crash_version(full->json).build_id;
      if (!id.empty() && id != mark.build_id && builds.size() < common::k_max_mark_builds) {
        builds.insert(id);
      }
    }
    mark.builds_before.assign(builds.begin(), builds.end());
  }
  Exit e = update_marks(*ctx.store, [&](common::Marks& m) {
    if (!m.by_group.contains(mark.group) && m.by_group.size() >= common::k_max_marks) {
      return report(Exit::failure, "Too many resolved groups (" +
                                       std::to_string(common::k_max_marks) +
                                       "); unresolve some first");
    }
    m.by_group.insert_or_assign(mark.group, mark);
    return Exit::ok;
  });
  if (e == Exit::ok && !ctx.opts.quiet) {
    std::fprintf(stderr, "Marked %s resolved in %s.\n", printable(mark.group).c_str(),
                 printable(common::describe_mark(mark)).c_str());
  }
  return e;
}

Exit cmd_unresolve(Context& ctx) {
  if (Exit e = may_write(*ctx.store); e != Exit::ok) {
    return e;
  }
  const std::string& word = ctx.opts.matches.at(0);
  return update_marks(*ctx.store, [&](common::Marks& m) {
    // The mark's own key first: its records may all be gone by now.
    auto it = m.by_group.find(word);
    if (it == m.by_group.end()) {
      std::vector<std::map<std::string, common::ResolveMark>::iterator> hits;
      for (auto i = m.by_group.begin(); i != m.by_group.end(); ++i) {
        if (word.size() >= 4 && i->first.starts_with(word)) {
          hits.push_back(i);
        }
      }
      if (hits.size() != 1) {
        return report(hits.empty() ? Exit::not_found : Exit::usage,
                      "No single resolved group '" + printable(word.substr(0, 64)) + "'");
      }
      it = hits.front();
    }
    if (!ctx.opts.quiet) {
      std::fprintf(stderr, "Forgot the resolve mark of %s.\n", printable(it->first).c_str());
    }
    m.by_group.erase(it);
    return Exit::ok;
  });
}

} // namespace cli
