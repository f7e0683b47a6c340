// The group state files and the group state machine.
#include "common/packages/group_state.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "common/base/json_bounds.hpp"
#include "common/packages/debian_version.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <tuple>

namespace common {

namespace {

using nlohmann::json;

constexpr int k_format = 1;
constexpr unsigned k_groups_file_mode = 0640;

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return {};
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool is_hex(std::string_view s) {
  return !s.empty() && std::ranges::all_of(s, [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// A typed reader of one untrusted object: the first problem is kept, later reads are no-ops.
class Reader {
public:
  explicit Reader(std::string& error) : m_error(error) {}
  bool ok() const { return m_error.empty(); }
  void fail(std::string why) {
    if (m_error.empty()) {
      m_error = std::move(why);
    }
  }
  // A string member; `required` ones must be present and non-empty.
  std::string text(const json& obj, const char* key, bool required) {
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (required) {
        fail(std::string("'") + key + "' is missing");
      }
      return {};
    }
    if (!it->is_string() || it->get_ref<const std::string&>().size() > k_max_group_text ||
        (required && it->get_ref<const std::string&>().empty())) {
      fail(std::string("'") + key + "' is not a string of at most 4096 bytes");
      return {};
    }
    return it->get<std::string>();
  }
  int64_t integer(const json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_number_integer()) {
      fail(std::string("'") + key + "' is not an integer");
      return 0;
    }
    return it->get<int64_t>();
  }
  uint64_t count(const json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_number_unsigned()) {
      fail(std::string("'") + key + "' is not a count");
      return 0;
    }
    return it->get<uint64_t>();
  }
  // An array member (absent = empty), of at most `max` entries.
  const json* array(const json& obj, const char* key, size_t max) {
    auto it = obj.find(key);
    if (it == obj.end()) {
      return &m_empty;
    }
    if (!it->is_array() || it->size() > max) {
      fail(std::string("'") + key + "' is not an array of at most " + std::to_string(max) +
           " entries");
      return &m_empty;
    }
    return &*it;
  }
  const json& object(const json& entry, const char* what) {
    if (!entry.is_object()) {
      fail(std::string(what) + " is not an object");
      return m_empty_object;
    }
    return entry;
  }

private:
  std::string& m_error;
  json m_empty = json::array();
  json m_empty_object = json::object();
};

// The file's JSON, bounded before the parse, with its format version checked.
Expected<json> parse_file(std::string_view text, const char* what) {
  if (auto err = json_bounds_error(text, k_groups_file_limit); !err.empty()) {
    return fail(std::string(what) + ": " + err);
  }
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(std::string(what) + ": not a JSON object");
  }
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_unsigned() || v->get<uint64_t>() != k_format) {
    return fail(std::string(what) + ": not format version 1");
  }
  return j;
}

json label_json(const GroupLabel& l) {
  return {{"hostname", l.hostname}, {"executable", l.executable}, {"signal", l.signal}};
}

GroupLabel read_label(Reader& in, const json& obj) {
  GroupLabel l;
  l.hostname = in.text(obj, "hostname", false);
  l.executable = in.text(obj, "executable", false);
  l.signal = in.text(obj, "signal", false);
  return l;
}

json counts_json(const std::map<GroupLabel, uint64_t>& counts) {
  json out = json::array();
  for (const auto& [label, n] : counts) {
    json e = label_json(label);
    e["count"] = n;
    out.push_back(std::move(e));
  }
  return out;
}

void read_counts(Reader& in, const json& j, const char* key, std::map<GroupLabel, uint64_t>& out) {
  for (const json& e : *in.array(j, key, k_max_counter_series + 2 * 64)) {
    const json& obj = in.object(e, "a counter");
    GroupLabel label = read_label(in, obj);
    const uint64_t n = in.count(obj, "count");
    if (!in.ok()) {
      return;
    }
    // A label listed twice would let the file's owner lower a counter by splitting it; the
    // counts add up, as the ledger's do.
    uint64_t& slot = out[std::move(label)];
    slot = n > UINT64_MAX - slot ? UINT64_MAX : slot + n;
  }
}

Expected<std::optional<std::string>> read_groups_file(int store_fd, const char* name) {
  const std::string path = std::string(k_groups_dir) + "/" + name;
  auto text = read_file(store_fd, path, k_groups_file_limit);
  if (!text) {
    if (text.error().sys_errno == ENOENT) {
      return std::optional<std::string>();
    }
    return std::unexpected(text.error());
  }
  return std::optional<std::string>(std::move(*text));
}

// The files are owned like the store root, whoever writes them: root's corectl resolve must
// leave a file the exporter (the store user) can still read and replace.
Expected<void> write_groups_file(int store_fd, const char* name, const std::string& text) {
  struct stat root {};
  if (::fstat(store_fd, &root) != 0) {
    return fail_errno("Failed to stat the store", errno);
  }
  if (::mkdirat(store_fd, k_groups_dir, 0750) == 0) {
    // EPERM: an unprivileged writer (the store user) cannot give files away, and need not.
    if (::fchownat(store_fd, k_groups_dir, root.st_uid, root.st_gid, AT_SYMLINK_NOFOLLOW) != 0 &&
        errno != EPERM) {
      return fail_errno(std::string("Failed to give '") + k_groups_dir + "' to the store owner",
                        errno);
    }
  } else if (errno != EEXIST) {
    return fail_errno(std::string("Failed to create '") + k_groups_dir + "'", errno);
  }
  auto dir = open_at(store_fd, k_groups_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    return std::unexpected(dir.error());
  }
  auto file = AtomicFile::create(dir->get(), name, k_groups_file_mode);
  if (!file) {
    return std::unexpected(file.error());
  }
  const std::string path = std::string(k_groups_dir) + "/" + name;
  if (::fchown(file->fd(), root.st_uid, root.st_gid) != 0 && errno != EPERM) {
    return fail_errno("Failed to give '" + path + "' to the store owner", errno);
  }
  // Set explicitly so the exporter's group can read it whatever the umask.
  if (::fchmod(file->fd(), k_groups_file_mode) != 0) {
    return fail_errno("Failed to set the mode of '" + path + "'", errno);
  }
  if (auto w = file->write(text); !w) {
    return w;
  }
  return file->commit(Replace::yes);
}

} // namespace

std::string group_key(std::string_view signature, std::string_view executable, int signal) {
  if (!signature.empty()) {
    return std::string(signature);
  }
  return "x:" + std::to_string(signal) + ":" + std::string(executable);
}

std::string ResolveMark::event_id() const {
  return group + "@" + std::to_string(time);
}

Expected<ResolveMark> parse_resolve_target(std::string_view text) {
  ResolveMark m;
  if (const size_t eq = text.find('='); eq != std::string_view::npos) {
    m.package = std::string(text.substr(0, eq));
    m.version = std::string(text.substr(eq + 1));
    const bool name_ok =
        !m.package.empty() && m.package.size() <= 256 && std::ranges::all_of(m.package, [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '-' || c == '.' || c == '_' || c == ':' || c == '@' || c == '/';
        });
    if (!name_ok) {
      return fail("'" + m.package.substr(0, 64) + "' is not a package name");
    }
    if (m.version.size() > 256 || !parse_debian_version(m.version)) {
      return fail("'" + m.version.substr(0, 64) + "' is not a version");
    }
    return m;
  }
  std::string id(text);
  std::ranges::transform(id, id.begin(), [](char c) {
    return c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (id.size() < 2 || id.size() > 128 || !is_hex(id)) {
    return fail("--in takes PACKAGE=VERSION or an executable build-id (hex), not '" +
                std::string(text.substr(0, 64)) + "'");
  }
  m.build_id = std::move(id);
  return m;
}

std::string describe_mark(const ResolveMark& mark) {
  if (!mark.package.empty()) {
    return mark.package + "=" + mark.version;
  }
  if (!mark.build_id.empty()) {
    return "build-id " + mark.build_id;
  }
  return "the next build";
}

CrashVersion crash_version(const json& record) {
  CrashVersion v;
  if (!record.is_object()) {
    return v;
  }
  const std::string exe = str(record, "executable");
  std::string module;
  if (auto c = record.find("crash"); c != record.end()) {
    module = str(*c, "module");
  }
  if (auto m = record.find("mappings"); m != record.end() && m->is_array() && !exe.empty()) {
    for (const auto& e : *m) {
      if (str(e, "path") == exe) {
        v.build_id = str(e, "build_id");
        if (!v.build_id.empty()) {
          break;
        }
      }
    }
  }
  auto p = record.find("packages");
  if (p == record.end() || !p->is_object()) {
    return v;
  }
  auto owners = p->find("owners");
  if (owners == p->end() || !owners->is_array()) {
    return v;
  }
  for (const auto& o : *owners) {
    const std::string path = str(o, "path");
    const std::string name = str(o, "package");
    if (name.empty() || (path != exe && path != module)) {
      continue;
    }
    std::pair<std::string, std::string> pv{name, str(o, "version")};
    if (std::ranges::find(v.packages, pv) == v.packages.end()) {
      v.packages.push_back(std::move(pv));
    }
  }
  return v;
}

std::string describe_version(const CrashVersion& v) {
  std::string out;
  for (const auto& [name, version] : v.packages) {
    out += (out.empty() ? "" : ", ") + name + " " + (version.empty() ? "?" : version);
  }
  if (!v.build_id.empty()) {
    out += (out.empty() ? "" : ", ") + std::string("build-id ") + v.build_id.substr(0, 12);
  }
  return out;
}

bool regresses(const ResolveMark& mark, const CrashVersion& v) {
  if (!mark.package.empty()) {
    for (const auto& [name, version] : v.packages) {
      if (name == mark.package) {
        // An unparsable or empty version sorts first (debian_version.hpp): it is never newer
        // than the fix, but it is not older either when the fix itself cannot be parsed.
        return version.empty() || compare_debian_versions(version, mark.version) >= 0;
      }
    }
    return true;
  }
  if (v.build_id.empty()) {
    return true;
  }
  return std::ranges::find(mark.builds_before, v.build_id) == mark.builds_before.end();
}

std::string marks_to_text(const Marks& marks) {
  json list = json::array();
  for (const auto& [group, m] : marks.by_group) {
    json e = {{"group", m.group}, {"time", m.time}, {"uid", m.uid}};
    if (!m.package.empty()) {
      e["package"] = m.package;
      e["version"] = m.version;
    } else {
      e["build_id"] = m.build_id;
      e["builds_before"] = m.builds_before;
    }
    list.push_back(std::move(e));
  }
  return json{{"version", k_format}, {"marks", std::move(list)}}.dump(1) + "\n";
}

Expected<Marks> parse_marks(std::string_view text) {
  auto j = parse_file(text, "resolve marks");
  if (!j) {
    return std::unexpected(j.error());
  }
  std::string error;
  Reader in(error);
  Marks out;
  for (const json& e : *in.array(*j, "marks", k_max_marks)) {
    const json& obj = in.object(e, "a mark");
    ResolveMark m;
    m.group = in.text(obj, "group", true);
    m.time = in.integer(obj, "time");
    m.uid = in.integer(obj, "uid");
    m.package = in.text(obj, "package", false);
    m.version = in.text(obj, "version", false);
    m.build_id = in.text(obj, "build_id", false);
    for (const json& b : *in.array(obj, "builds_before", k_max_mark_builds)) {
      if (!b.is_string() || !is_hex(b.get_ref<const std::string&>()) ||
          b.get_ref<const std::string&>().size() > 128) {
        in.fail("'builds_before' holds something other than a build-id");
        break;
      }
      m.builds_before.push_back(b.get<std::string>());
    }
    // A package mark (package and version), or a build mark (a build-id, or none: fixed in
    // the next build; with the builds before it).
    if (in.ok() && m.package.empty() != m.version.empty()) {
      in.fail("a package mark needs a package and a version");
    }
    if (in.ok() && !m.package.empty() && (!m.build_id.empty() || !m.builds_before.empty())) {
      in.fail("a mark is either a package's or a build's");
    }
    if (in.ok() && !m.build_id.empty() && !is_hex(m.build_id)) {
      in.fail("'build_id' is not a build-id");
    }
    if (!in.ok()) {
      break;
    }
    std::string group = m.group;
    out.by_group.insert_or_assign(std::move(group), std::move(m));
  }
  if (!error.empty()) {
    return fail("resolve marks: " + error);
  }
  return out;
}

std::string seen_to_text(const Seen& seen) {
  json groups = json::array();
  for (const auto& [key, g] : seen.groups) {
    json e = label_json(g.label);
    e["group"] = key;
    e["first"] = g.first;
    if (!g.parent.empty()) {
      e["parent"] = g.parent;
    }
    groups.push_back(std::move(e));
  }
  return json{{"version", k_format},
              {"groups", std::move(groups)},
              {"new", counts_json(seen.new_counts)},
              {"regressions", counts_json(seen.regressions)},
              {"regressed", seen.regressed}}
             .dump(1) +
         "\n";
}

Expected<Seen> parse_seen(std::string_view text) {
  auto j = parse_file(text, "seen-set");
  if (!j) {
    return std::unexpected(j.error());
  }
  std::string error;
  Reader in(error);
  Seen out;
  for (const json& e : *in.array(*j, "groups", k_max_seen)) {
    const json& obj = in.object(e, "a group");
    std::string key = in.text(obj, "group", true);
    SeenGroup g;
    g.first = in.integer(obj, "first");
    g.label = read_label(in, obj);
    g.parent = in.text(obj, "parent", false);
    if (!in.ok()) {
      break;
    }
    out.groups.insert_or_assign(std::move(key), std::move(g));
  }
  read_counts(in, *j, "new", out.new_counts);
  read_counts(in, *j, "regressions", out.regressions);
  for (const json& e : *in.array(*j, "regressed", k_max_marks)) {
    if (!e.is_string() || e.get_ref<const std::string&>().size() > k_max_group_text) {
      in.fail("'regressed' holds something other than a mark");
      break;
    }
    out.regressed.insert(e.get<std::string>());
  }
  if (!error.empty()) {
    return fail("seen-set: " + error);
  }
  return out;
}

Expected<std::optional<Marks>> read_marks(int store_fd) {
  auto text = read_groups_file(store_fd, k_marks_name);
  if (!text) {
    return std::unexpected(text.error());
  }
  if (!*text) {
    return std::optional<Marks>();
  }
  auto marks = parse_marks(**text);
  if (!marks) {
    return std::unexpected(marks.error());
  }
  return std::optional<Marks>(std::move(*marks));
}

Expected<std::optional<Seen>> read_seen(int store_fd) {
  auto text = read_groups_file(store_fd, k_seen_name);
  if (!text) {
    return std::unexpected(text.error());
  }
  if (!*text) {
    return std::optional<Seen>();
  }
  auto seen = parse_seen(**text);
  if (!seen) {
    return std::unexpected(seen.error());
  }
  return std::optional<Seen>(std::move(*seen));
}

Expected<void> write_marks(int store_fd, const Marks& marks) {
  return write_groups_file(store_fd, k_marks_name, marks_to_text(marks));
}

Expected<void> write_seen(int store_fd, const Seen& seen) {
  return write_groups_file(store_fd, k_seen_name, seen_to_text(seen));
}

std::string_view to_string(GroupState s) {
  switch (s) {
  case GroupState::new_group:
    return "new";
  case GroupState::ongoing:
    return "ongoing";
  case GroupState::resolved:
    return "resolved";
  case GroupState::regressed:
    return "regressed";
  }
  return "ongoing";
}

void merge_marks(Marks& into, const Marks& from) {
  auto order = [](const ResolveMark& m) {
    return std::tie(m.time, m.package, m.version, m.build_id, m.builds_before, m.uid);
  };
  for (const auto& [key, mark] : from.by_group) {
    auto [it, inserted] = into.by_group.try_emplace(key, mark);
    if (!inserted && order(it->second) < order(mark)) {
      it->second = mark;
    }
  }
}

void merge_seen_groups(Seen& into, const Seen& from) {
  // An unknown first crash (0) is no earlier than a known one.
  auto order = [](const SeenGroup& g) {
    return std::make_tuple(g.first > 0 ? g.first : INT64_MAX, g.label, g.parent);
  };
  for (const auto& [key, group] : from.groups) {
    auto [it, inserted] = into.groups.try_emplace(key, group);
    if (!inserted && order(group) < order(it->second)) {
      it->second = group;
    }
  }
}

GroupState group_state(int64_t first, int64_t now, int64_t window, const ResolveMark* mark,
                       bool regressed) {
  if (mark != nullptr) {
    return regressed ? GroupState::regressed : GroupState::resolved;
  }
  // A first crash "in the future" (a clock set back, or a hostile record) is not new forever:
  // only a first crash within [now - window, now] is.
  return first > 0 && first <= now && now - first < window ? GroupState::new_group
                                                           : GroupState::ongoing;
}

} // namespace common
