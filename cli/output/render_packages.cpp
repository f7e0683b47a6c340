// info's packages and changes: the owner beside each mapped file, the block on what changed.
#include "cli/output/render.hpp"

namespace cli {

namespace {

using nlohmann::json;

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return {};
  }
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

} // namespace

std::string owner_suffix(const json& packages, const json& m) {
  const std::string path = str(m, "path");
  auto owners = packages.is_object() ? packages.find("owners") : packages.end();
  if (path.empty() || !packages.is_object() || owners == packages.end() || !owners->is_array()) {
    return {};
  }
  for (const auto& o : *owners) {
    if (str(o, "path") == path) {
      const std::string version = str(o, "version");
      return "  (" + printable(str(o, "package")) +
             (version.empty() ? "" : " " + printable(version)) + ")";
    }
  }
  return {};
}

void print_changes(const Term& term, const json& record, std::string& out) {
  auto changes = record.is_object() ? record.find("changes") : record.end();
  if (!record.is_object() || changes == record.end() || !changes->is_object()) {
    return;
  }
  auto block = [&](const char* key, const char* label) {
    auto it = changes->find(key);
    if (it == changes->end() || !it->is_object()) {
      return;
    }
    const std::string text = str(*it, "text");
    out += "\n" + term.paint("1", std::string("Changed since the ") + label) + " (" +
           printable(str(*it, "id")) + ", " + printable(str(*it, "time")) +
           "): " + (text.empty() ? "nothing in packages or build-ids" : printable(text)) + "\n";
  };
  block("previous", "previous crash of this group");
  block("first", "first crash of this group");
  if (auto log = changes->find("package_log");
      log != changes->end() && log->is_array() && !log->empty()) {
    out += term.paint("1", "Package manager") + ":\n";
    for (const auto& l : *log) {
      if (l.is_string()) {
        out += "  " + printable(l.get<std::string>()) + "\n";
      }
    }
  }
}

} // namespace cli
