#include "common/store/record.hpp"

#include "common/base/escape.hpp"
#include "common/base/json_bounds.hpp"
#include "common/base/parse.hpp"
#include "common/record/enum_names.hpp"
#include "common/store/names.hpp"

#include <algorithm>
#include <array>
#include <ctime>
#include <utility>

namespace common {

namespace {

using nlohmann::json;

constexpr record::EnumNames<CoreReason, 11> k_reasons = {{
    {CoreReason::stored, "stored"},
    {CoreReason::truncated, "truncated"},
    {CoreReason::rlimit, "rlimit"},
    {CoreReason::too_large, "too_large"},
    {CoreReason::disk_full, "disk_full"},
    {CoreReason::quota, "quota"},
    {CoreReason::rate_limited, "rate_limited"},
    {CoreReason::busy, "busy"},
    {CoreReason::empty, "empty"},
    {CoreReason::not_elf, "not_elf"},
    {CoreReason::error, "error"},
}};

template <typename T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

std::string utf8(std::string_view s) {
  return to_valid_utf8(s);
}

// Recursively replaces invalid UTF-8 in every string of a free-form section, so a dump can never
// throw and readers never see broken text.
json clean(const json& j) {
  if (j.is_string()) {
    return utf8(j.get_ref<const std::string&>());
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& e : j) {
      out.push_back(clean(e));
    }
    return out;
  }
  if (j.is_object()) {
    json out = json::object();
    for (const auto& [k, v] : j.items()) {
      out[utf8(k)] = clean(v);
    }
    return out;
  }
  return j;
}

// The keys each object of the record has in this version; any other key is kept as unknown.
constexpr std::array k_record_keys = {"schema",
                                      "id",
                                      "time",
                                      "hostname",
                                      "executable",
                                      "executable_deleted",
                                      "executable_raw",
                                      "signal",
                                      "signal_name",
                                      "pid",
                                      "tid",
                                      "uid",
                                      "gid",
                                      "comm",
                                      "cmdline",
                                      "dump_mode",
                                      "rlimit_core",
                                      "core",
                                      "store",
                                      "handler",
                                      "crash",
                                      "mappings",
                                      "container",
                                      "node",
                                      "packages",
                                      "runtime_report",
                                      "python"};
constexpr std::array k_core_keys = {
    "present",       "reason", "path",        "size",  "stored_size", "truncated",
    "expected_size", "access", "compression", "error", "removed",     "removed_before_upload"};
constexpr std::array k_handler_keys = {"version",  "duration_ms", "drained_ms", "analysis_ms",
                                       "analysis", "warnings",    "cut"};

template <size_t N>
json unknown_keys(const json& object, const std::array<const char*, N>& known) {
  json out = json::object();
  for (const auto& item : object.items()) {
    const std::string& name = item.key();
    if (std::find_if(known.begin(), known.end(), [&](const char* key) { return name == key; }) ==
        known.end()) {
      out[name] = item.value();
    }
  }
  return out;
}

// Writes what a reader kept beside the keys this version wrote (which it never replaces).
void add_unknown(json& object, const json& unknown) {
  for (const auto& [k, v] : unknown.items()) {
    const std::string key = utf8(k);
    if (!object.contains(key)) {
      object[key] = clean(v);
    }
  }
}

template <typename T>
Expected<void> get_opt(const json& j, const char* key, std::optional<T>& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    out.reset();
    return {};
  }
  if (!it->is_number()) {
    return fail(std::string("field '") + key + "' is not a number");
  }
  out = it->get<T>();
  return {};
}

template <typename T>
Expected<void> get(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return {};
  }
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    return fail(std::string("field '") + key + "' has the wrong type");
  }
  return {};
}

} // namespace

std::string_view to_string(CoreReason r) {
  return record::enum_name(k_reasons, r, "error");
}

std::optional<CoreReason> parse_core_reason(std::string_view s) {
  return record::enum_from_name(k_reasons, s);
}

std::string format_time(int64_t epoch_seconds) {
  const auto t = static_cast<time_t>(epoch_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

std::optional<int64_t> parse_time(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac]Z
  if (text.size() < 20 || text.back() != 'Z') {
    return std::nullopt;
  }
  auto num = [&](size_t pos, size_t len) { return parse_number<int>(text.substr(pos, len)); };
  if (text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != ' ') || text[13] != ':' ||
      text[16] != ':') {
    return std::nullopt;
  }
  const auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
             s = num(17, 2);
  if (!y || !mo || !d || !h || !mi || !s || *mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 ||
      *mi > 59 || *s > 60) {
    return std::nullopt;
  }
  if (text.size() > 20 && text[19] != '.') {
    return std::nullopt;
  }
  struct tm tm {};
  tm.tm_year = *y - 1900;
  tm.tm_mon = *mo - 1;
  tm.tm_mday = *d;
  tm.tm_hour = *h;
  tm.tm_min = *mi;
  tm.tm_sec = *s;
  return static_cast<int64_t>(timegm(&tm));
}

json to_json(const Record& r) {
  json core = {
      {"present", r.core.present},
      {"reason", to_string(r.core.reason)},
      {"path", r.core.path.empty() ? json(nullptr) : json(utf8(r.core.path))},
      {"size", r.core.size},
      {"stored_size", r.core.stored_size},
      {"truncated", r.core.truncated},
      {"expected_size", opt(r.core.expected_size)},
      {"access", r.core.access == CoreAccess::owner ? "owner" : "root"},
      {"compression", r.core.present ? json(r.core.compression) : json(nullptr)},
  };
  if (!r.core.error.empty()) {
    core["error"] = utf8(r.core.error);
  }
  if (r.core.removed) {
    core["removed"] = *r.core.removed;
  }
  if (r.core.removed_before_upload) {
    core["removed_before_upload"] = true;
  }
  json j = {
      {"schema", r.schema},
      {"id", r.id},
      {"time", r.time},
      {"hostname", utf8(r.hostname)},
      {"executable", utf8(r.executable)},
      {"executable_deleted", r.executable_deleted},
      {"signal", r.signal},
      {"signal_name", r.signal_name},
      {"pid", opt(r.pid)},
      {"tid", opt(r.tid)},
      {"uid", opt(r.uid)},
      {"gid", opt(r.gid)},
      {"comm", utf8(r.comm)},
      {"cmdline", utf8(r.cmdline)},
      {"dump_mode", opt(r.dump_mode)},
      {"rlimit_core", opt(r.rlimit_core)},
      {"core", std::move(core)},
      {"store", {{"host", r.store_host}, {"executable", r.store_exe}}},
      {"handler",
       {{"version", r.handler.version},
        {"duration_ms", r.handler.duration_ms},
        {"drained_ms", r.handler.drained_ms},
        {"analysis_ms", r.handler.analysis_ms},
        {"warnings", clean(json(r.handler.warnings))}}},
  };
  if (!r.executable_raw.empty()) {
    j["executable_raw"] = utf8(r.executable_raw);
  }
  if (!r.crash.empty()) {
    j["crash"] = clean(r.crash);
  }
  if (!r.python.empty()) {
    j["python"] = clean(r.python);
  }
  if (!r.mappings.empty()) {
    j["mappings"] = clean(r.mappings);
  }
  if (!r.container.empty()) {
    j["container"] = clean(r.container);
  }
  if (!r.runtime_report.empty()) {
    j["runtime_report"] = clean(r.runtime_report);
  }
  if (!r.node.empty()) {
    j["node"] = clean(r.node);
  }
  if (!r.packages.empty()) {
    j["packages"] = clean(r.packages);
  }
  if (!r.handler.cut.empty()) {
    j["handler"]["cut"] = clean(json(r.handler.cut));
  }
  if (!r.handler.analysis.empty()) {
    j["handler"]["analysis"] = utf8(r.handler.analysis);
  }
  add_unknown(j["core"], r.core.unknown);
  add_unknown(j["handler"], r.handler.unknown);
  add_unknown(j, r.unknown);
  return j;
}

std::string to_json_text(const Record& r) {
  // Strings are already valid UTF-8; `replace` is a second line of defence so dump never throws.
  return to_json(r).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Expected<Record> record_from_json(const json& j) {
  if (!j.is_object()) {
    return fail("record is not a JSON object");
  }
  Record r;
  std::string reason = "error";
  std::string access = "root";
  const json core = j.value("core", json::object());
  const json store = j.value("store", json::object());
  const json handler = j.value("handler", json::object());
  if (!core.is_object() || !store.is_object() || !handler.is_object()) {
    return fail("record sections 'core', 'store' and 'handler' must be objects");
  }
  for (auto result : {
           get(j, "schema", r.schema),
           get(j, "id", r.id),
           get(j, "time", r.time),
           get(j, "hostname", r.hostname),
           get(j, "executable", r.executable),
           get(j, "executable_deleted", r.executable_deleted),
           get(j, "executable_raw", r.executable_raw),
           get(j, "signal", r.signal),
           get(j, "signal_name", r.signal_name),
           get_opt(j, "pid", r.pid),
           get_opt(j, "tid", r.tid),
           get_opt(j, "uid", r.uid),
           get_opt(j, "gid", r.gid),
           get(j, "comm", r.comm),
           get(j, "cmdline", r.cmdline),
           get_opt(j, "dump_mode", r.dump_mode),
           get_opt(j, "rlimit_core", r.rlimit_core),
           get(core, "present", r.core.present),
           get(core, "reason", reason),
           get(core, "path", r.core.path),
           get(core, "size", r.core.size),
           get(core, "stored_size", r.core.stored_size),
           get(core, "truncated", r.core.truncated),
           get_opt(core, "expected_size", r.core.expected_size),
           get(core, "access", access),
           get(core, "compression", r.core.compression),
           get(core, "error", r.core.error),
           get(store, "host", r.store_host),
           get(store, "executable", r.store_exe),
           get(handler, "version", r.handler.version),
           get(handler, "duration_ms", r.handler.duration_ms),
           get(handler, "drained_ms", r.handler.drained_ms),
           get(handler, "analysis_ms", r.handler.analysis_ms),
           get(handler, "analysis", r.handler.analysis),
           get(handler, "warnings", r.handler.warnings),
           get(handler, "cut", r.handler.cut),
       }) {
    if (!result) {
      return std::unexpected(result.error());
    }
  }
  if (r.id.empty()) {
    return fail("record has no 'id'");
  }
  if (r.signal < 0) {
    return fail("record has a negative 'signal'");
  }
  const auto parsed_reason = parse_core_reason(reason);
  if (!parsed_reason) {
    return fail("record has an unknown core.reason '" + reason + "'");
  }
  r.core.reason = *parsed_reason;
  r.core.access = access == "owner" ? CoreAccess::owner : CoreAccess::root_only;
  if (auto it = core.find("removed"); it != core.end() && it->is_string()) {
    r.core.removed = it->get<std::string>();
  }
  if (auto it = core.find("removed_before_upload"); it != core.end() && it->is_boolean()) {
    r.core.removed_before_upload = it->get<bool>();
  }
  if (auto it = j.find("crash"); it != j.end() && it->is_object()) {
    r.crash = *it;
  }
  if (auto it = j.find("python"); it != j.end() && it->is_object()) {
    r.python = *it;
  }
  if (auto it = j.find("mappings"); it != j.end() && it->is_array()) {
    r.mappings = *it;
  }
  if (auto it = j.find("container"); it != j.end() && it->is_object()) {
    r.container = *it;
  }
  if (auto it = j.find("runtime_report"); it != j.end() && it->is_object()) {
    r.runtime_report = *it;
  }
  if (auto it = j.find("node"); it != j.end() && it->is_object()) {
    r.node = *it;
  }
  r.unknown = unknown_keys(j, k_record_keys);
  // A section of the type another version gave it is kept as it was, not dropped.
  for (const char* key : {"crash", "container", "node", "packages", "runtime_report", "python"}) {
    if (auto it = j.find(key); it != j.end() && !it->is_object()) {
      r.unknown[key] = *it;
    }
  }
  if (auto it = j.find("mappings"); it != j.end() && !it->is_array()) {
    r.unknown["mappings"] = *it;
  }
  r.core.unknown = unknown_keys(core, k_core_keys);
  r.handler.unknown = unknown_keys(handler, k_handler_keys);
  if (auto it = j.find("packages"); it != j.end() && it->is_object()) {
    r.packages = *it;
  }
  return r;
}

Expected<json> parse_record_json(std::string_view text) {
  if (const std::string why = json_bounds_error(text, k_max_record_bytes); !why.empty()) {
    return fail("record is " + why);
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return fail("record is not valid JSON");
  }
  return j;
}

Expected<Record> parse_record(std::string_view text) {
  auto j = parse_record_json(text);
  if (!j) {
    return std::unexpected(j.error());
  }
  return record_from_json(*j);
}

} // namespace common
