// The changes block of corectl info.
#include "cli/verbs/changes.hpp"

#include "common/base/io.hpp"
#include "common/packages/changes.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <set>

namespace cli {

namespace {

// The package manager's logs are read from the end: the window before a crash is recent.
constexpr size_t k_max_log_bytes = size_t{8} << 20;
constexpr size_t k_max_log_lines = 12;

// The last `limit` bytes of a log file, from its first whole line; empty when unreadable.
std::string log_tail(const char* path) {
  auto fd = common::open_at(AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) {
    return {};
  }
  const off_t size = ::lseek(fd->get(), 0, SEEK_END);
  if (size < 0) {
    return {};
  }
  const off_t from =
      size > static_cast<off_t>(k_max_log_bytes) ? size - static_cast<off_t>(k_max_log_bytes) : 0;
  if (::lseek(fd->get(), from, SEEK_SET) < 0) {
    return {};
  }
  auto text = common::read_fd(fd->get(), path, k_max_log_bytes);
  if (!text) {
    return {};
  }
  if (from > 0) {
    const size_t nl = text->find('\n');
    text->erase(0, nl == std::string::npos ? text->size() : nl + 1);
  }
  return std::move(*text);
}

// The local time a dpkg.log line ("2026-12-02 11:40:01 upgrade …") or an apt history entry
// ("Start-Date: 2026-12-02  11:40:01") begins with; nullopt for other lines.
std::optional<int64_t> line_time(const std::string& line) {
  std::string_view s = line;
  if (s.starts_with("Start-Date: ") || s.starts_with("End-Date: ")) {
    s.remove_prefix(s.find(':') + 2);
  }
  struct tm tm {};
  const std::string head(s.substr(0, 21));
  if (::strptime(head.c_str(), "%Y-%m-%d %H:%M:%S", &tm) == nullptr) {
    return std::nullopt;
  }
  tm.tm_isdst = -1;
  return static_cast<int64_t>(::mktime(&tm));
}

// dpkg.log lines naming `packages` at or before `until`, and apt history entries naming them
// (with the entry's date line before the line naming them).
std::vector<std::string> package_manager_lines(const std::vector<std::string>& packages,
                                               int64_t until) {
  std::string before;
  for (const char* path : {"/var/log/dpkg.log", "/var/log/apt/history.log"}) {
    std::string text = log_tail(path);
    std::string kept;
    std::string date;
    size_t at = 0;
    while (at < text.size()) {
      const size_t nl = std::min(text.find('\n', at), text.size());
      std::string line = text.substr(at, nl - at);
      at = nl + 1;
      const auto t = line_time(line);
      if (line.starts_with("Start-Date: ")) {
        date = line;
        continue;
      }
      if (t && *t > until) {
        continue;
      }
      if (!t && !date.empty()) {
        const auto dt = line_time(date);
        if (!dt || *dt > until) {
          continue;
        }
        line = date.substr(12) + " " + line;
      }
      kept += line + "\n";
    }
    before += kept;
  }
  return common::package_log_lines(before, packages, k_max_log_lines);
}

} // namespace

GroupSource store_source(const common::Store& store) {
  GroupSource source;
  source.read_record = [&store](const Located& where) { return read_record(store, where); };
  source.written = [&store](const Located& where) {
    struct stat st {};
    const std::string rel = common::record_relpath(where.host_dir, where.exe_dir, where.id);
    if (::fstatat(store.fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return int64_t{0};
    }
    return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  };
  return source;
}

std::string signature_of(const FullRecord& full) {
  const auto& crash = full.record.crash;
  if (crash.is_object()) {
    if (auto it = crash.find("signature"); it != crash.end()) {
      if (const auto* text = it->get_ptr<const std::string*>()) {
        return *text;
      }
    }
  }
  return {};
}

std::optional<nlohmann::json> group_changes(const GroupSource& source, const Catalog& group,
                                            const Located& where, const FullRecord& full) {
  const std::string signature = signature_of(full);
  if (signature.empty()) {
    return std::nullopt;
  }
  const int64_t now = common::parse_time(full.record.time).value_or(0);
  const Crash* first = nullptr;
  const Crash* previous = nullptr;
  // Records carry whole seconds: crashes of one second are ordered by when their records were
  // written (the handler writes the record last), where that is known.
  auto written = [&](const std::string& host, const std::string& exe, const std::string& id) {
    return source.written ? source.written(Located{host, exe, id}) : int64_t{0};
  };
  const int64_t this_written = written(where.host_dir, where.exe_dir, where.id);
  for (const auto& c : group.crashes) {
    if (c.signature != signature || c.id == full.record.id || c.time > now) {
      continue;
    }
    if (c.time == now &&
        (!source.written || written(c.host_dir, c.exe_dir, c.id) >= this_written)) {
      continue;
    }
    if (!first || c.time < first->time) {
      first = &c;
    }
    if (!previous || c.time >= previous->time) {
      previous = &c;
    }
  }
  if (!previous) {
    return std::nullopt;
  }
  nlohmann::json out = nlohmann::json::object();
  std::set<std::string> changed_packages;
  auto against = [&](const Crash& c, const char* key) {
    auto other = source.read_record(Located{c.host_dir, c.exe_dir, c.id});
    if (!other) {
      return;
    }
    const auto changes = common::diff_records(other->json, full.json);
    for (const auto& ch : changes) {
      if (ch.kind == common::ChangeKind::package) {
        changed_packages.insert(ch.subject);
      }
    }
    out[key] = {{"id", c.id},
                {"time", other->record.time},
                {"changes", common::to_json(changes)},
                {"text", common::describe(changes)}};
  };
  against(*previous, "previous");
  if (first != previous) {
    against(*first, "first");
  }
  // The host's package logs speak of the host's packages only: a container's crash, or one
  // uploaded from another host, has its own.
  const bool host_root = source.host_logs && !full.record.container.contains("container_id");
  if (host_root && !changed_packages.empty()) {
    out["package_log"] =
        package_manager_lines({changed_packages.begin(), changed_packages.end()}, now);
  }
  return out;
}

} // namespace cli
