// What changed between two crashes of a group.
#include "common/packages/changes.hpp"

#include "common/base/escape.hpp"

#include <deque>
#include <map>

namespace common {

namespace {

using nlohmann::json;

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return {};
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// package → version of the record's owners (the first owner of a package wins).
std::map<std::string, std::string> package_versions(const json& record) {
  std::map<std::string, std::string> out;
  if (!record.is_object()) {
    return out;
  }
  auto p = record.find("packages");
  if (p == record.end() || !p->is_object()) {
    return out;
  }
  auto owners = p->find("owners");
  if (owners == p->end() || !owners->is_array()) {
    return out;
  }
  for (const auto& o : *owners) {
    const std::string name = str(o, "package");
    if (!name.empty()) {
      out.try_emplace(name, str(o, "version"));
    }
  }
  return out;
}

// path → build-id of the record's mappings that carry one.
std::map<std::string, std::string> build_ids(const json& record) {
  std::map<std::string, std::string> out;
  if (!record.is_object()) {
    return out;
  }
  auto m = record.find("mappings");
  if (m == record.end() || !m->is_array()) {
    return out;
  }
  for (const auto& e : *m) {
    const std::string path = str(e, "path");
    const std::string id = str(e, "build_id");
    if (!path.empty() && !id.empty()) {
      out.try_emplace(path, id);
    }
  }
  return out;
}

std::string short_id(const std::string& id) {
  return id.size() > 12 ? id.substr(0, 12) + "…" : id;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

} // namespace

std::vector<Change> diff_records(const json& before, const json& after, size_t max) {
  std::vector<Change> out;
  const auto old_packages = package_versions(before);
  for (const auto& [name, version] : package_versions(after)) {
    auto it = old_packages.find(name);
    const std::string from = it == old_packages.end() ? std::string() : it->second;
    if ((it == old_packages.end() || from != version) && out.size() < max) {
      out.push_back({ChangeKind::package, name, from, version});
    }
  }
  const auto old_ids = build_ids(before);
  for (const auto& [path, id] : build_ids(after)) {
    auto it = old_ids.find(path);
    if (it != old_ids.end() && it->second != id && out.size() < max) {
      out.push_back({ChangeKind::build_id, path, it->second, id});
    }
  }
  return out;
}

std::string describe(const std::vector<Change>& changes) {
  std::string out;
  for (const auto& c : changes) {
    if (!out.empty()) {
      out += ", ";
    }
    const std::string from = c.from.empty() ? "-" : c.from;
    const std::string to = c.to.empty() ? "-" : c.to;
    if (c.kind == ChangeKind::package) {
      out += c.subject + " " + from + " → " + to;
    } else {
      out += c.subject + " build-id " + short_id(from) + " → " + short_id(to);
    }
  }
  return out;
}

json to_json(const std::vector<Change>& changes) {
  json out = json::array();
  for (const auto& c : changes) {
    out.push_back({{"kind", c.kind == ChangeKind::package ? "package" : "build_id"},
                   {"subject", to_valid_utf8(c.subject)},
                   {"from", to_valid_utf8(c.from)},
                   {"to", to_valid_utf8(c.to)}});
  }
  return out;
}

std::vector<std::string> package_log_lines(std::string_view text,
                                           const std::vector<std::string>& packages, size_t max) {
  std::deque<std::string> kept;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    bool named = false;
    for (const auto& p : packages) {
      // A whole word: "libcrashy1" or "libcrashy1:amd64", not "libcrashy1-dev".
      for (size_t at = line.find(p); !named && at != std::string_view::npos;
           at = line.find(p, at + 1)) {
        const bool starts = at == 0 || !is_name_char(line[at - 1]);
        const size_t end = at + p.size();
        const bool ends = end == line.size() || line[end] == ':' || line[end] == ' ' ||
                          line[end] == ',' || line[end] == ')' || line[end] == '(';
        named = starts && ends;
      }
      if (named) {
        break;
      }
    }
    if (named) {
      kept.emplace_back(to_valid_utf8(line));
      if (kept.size() > max) {
        kept.pop_front();
      }
    }
  }
  return {kept.begin(), kept.end()};
}

} // namespace common
