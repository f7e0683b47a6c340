#include "cli/debuginfo/enrich.hpp"

#include "cli/debuginfo/debuginfo_lookup.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/parse.hpp"
#include "common/crash/symbolize.hpp"

#include <elfutils/debuginfod.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace cli {

namespace {

using Clock = std::chrono::steady_clock;

struct ClientDeleter {
  void operator()(debuginfod_client* c) const { debuginfod_end(c); }
};

// The client calls this while it downloads: a non-zero return abandons the transfer, which is
// how the overall budget bounds a slow or stalled server.
int progress(debuginfod_client* c, long /*done*/, long /*total*/) {
  const auto* deadline = static_cast<const Clock::time_point*>(debuginfod_get_user_data(c));
  return deadline != nullptr && Clock::now() > *deadline ? 1 : 0;
}

} // namespace

// Where each module's first mapping starts, from the record's `mappings`.
std::map<std::string, uint64_t> module_starts(const nlohmann::json& mappings) {
  std::map<std::string, uint64_t> out;
  if (!mappings.is_array()) {
    return out;
  }
  for (size_t i = 0; i < mappings.size(); ++i) {
    const nlohmann::json& m = mappings[i];
    if (!m.is_object() || !m.contains("path") || !m["path"].is_string() || !m.contains("start") ||
        !m["start"].is_string()) {
      continue;
    }
    if (const auto v = common::parse_hex_u64(m["start"].get<std::string>())) {
      out.emplace(m["path"].get<std::string>(), *v);
    }
  }
  return out;
}

bool has_build_id(const std::string& path, const std::string& build_id, std::string_view what) {
  std::string wanted = build_id;
  std::ranges::transform(wanted, wanted.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto got = common::read_build_id(path);
  if (got && *got == wanted) {
    return true;
  }
  std::fprintf(stderr,
               "corectl: warning: debuginfod answered %s %s with a file of build-id %s; "
               "ignoring it\n",
               std::string(what).c_str(), common::printable(wanted).c_str(),
               got ? common::printable(*got).c_str() : "(none)");
  return false;
}

std::optional<FetchedFile> fetch_executable(const std::string& build_id,
                                            std::chrono::milliseconds budget) {
  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (urls == nullptr || *urls == '\0' || !common::is_hex(build_id)) {
    return std::nullopt;
  }
  std::unique_ptr<debuginfod_client, ClientDeleter> client(debuginfod_begin());
  if (!client) {
    return std::nullopt;
  }
  const Clock::time_point deadline = Clock::now() + budget;
  debuginfod_set_user_data(client.get(), const_cast<Clock::time_point*>(&deadline));
  debuginfod_set_progressfn(client.get(), progress);
  char* path = nullptr;
  common::UniqueFd fd(debuginfod_find_executable(
      client.get(), reinterpret_cast<const unsigned char*>(build_id.c_str()), 0, &path));
  std::optional<FetchedFile> out;
  if (fd && path != nullptr && path[0] == '/' &&
      has_build_id(path, build_id, "the executable of build-id")) {
    out = FetchedFile{std::move(fd), std::string(path)};
  }
  std::free(path); // NOLINT(cppcoreguidelines-no-malloc): the client strdup()s it
  return out;
}

size_t enrich_with_debuginfod(nlohmann::json& crash, const nlohmann::json& mappings,
                              const EnrichOptions& options) {
  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (urls == nullptr || *urls == '\0' || !crash.is_object()) {
    return 0;
  }
  if (!crash.contains("stacks") || !crash["stacks"].is_array()) {
    return 0;
  }
  nlohmann::json& stacks = crash["stacks"];
  const std::map<std::string, uint64_t> starts = module_starts(mappings);
  std::unique_ptr<debuginfod_client, ClientDeleter> client(debuginfod_begin());
  if (!client) {
    return 0;
  }
  const Clock::time_point deadline = Clock::now() + options.budget;
  debuginfod_set_user_data(client.get(), const_cast<Clock::time_point*>(&deadline));
  debuginfod_set_progressfn(client.get(), progress);

  // The frames to name, by build-id, in the order the build-ids first appear.
  struct Wanted {
    nlohmann::json* frame;
    LookupQuery query;
  };
  std::vector<std::pair<std::string, std::vector<Wanted>>> by_build_id;
  for (size_t ti = 0; ti < stacks.size(); ++ti) {
    nlohmann::json& thread = stacks[ti];
    if (!thread.is_object() || !thread.contains("frames") || !thread["frames"].is_array()) {
      continue;
    }
    nlohmann::json& frames = thread["frames"];
    for (size_t fi = 0; fi < frames.size(); ++fi) {
      nlohmann::json& f = frames[fi];
      if (!f.is_object() || !f.value("file", nlohmann::json()).is_null() ||
          f.value("inlined", false)) {
        continue;
      }
      const std::string build_id = f.value("build_id", nlohmann::json()).is_string()
                                       ? f["build_id"].get<std::string>()
                                       : std::string();
      const std::string pc_text =
          f.value("pc", nlohmann::json()).is_string() ? f["pc"].get<std::string>() : std::string();
      const std::string module =
          f.value("module", nlohmann::json()).is_string() ? f["module"].get<std::string>() : "";
      const auto pc = common::parse_hex_u64(pc_text);
      const auto start = starts.find(module);
      if (!common::is_hex(build_id) || !pc || start == starts.end()) {
        continue;
      }
      auto it =
          std::ranges::find_if(by_build_id, [&](const auto& b) { return b.first == build_id; });
      if (it == by_build_id.end()) {
        if (by_build_id.size() >= options.max_build_ids) {
          continue;
        }
        it = by_build_id.insert(by_build_id.end(), {build_id, {}});
      }
      it->second.push_back(
          {&f, LookupQuery{*pc, start->second, f.value("trust", std::string()) == "context"}});
    }
  }

  size_t changed = 0;
  for (auto& [build_id, wanted] : by_build_id) {
    if (Clock::now() > deadline) {
      break;
    }
    char* path = nullptr;
    const common::UniqueFd fd(debuginfod_find_debuginfo(
        client.get(), reinterpret_cast<const unsigned char*>(build_id.c_str()), 0, &path));
    const bool usable =
        fd && path != nullptr && has_build_id(path, build_id, "the debug file of build-id");
    std::free(path); // NOLINT(cppcoreguidelines-no-malloc): the client strdup()s it
    if (!usable) {
      continue;
    }
    // The server's file is parsed in the sandboxed child, never here.
    std::vector<LookupQuery> queries;
    queries.reserve(wanted.size());
    for (const Wanted& w : wanted) {
      queries.push_back(w.query);
    }
    const auto answers = lookup_in_child(fd.get(), queries, deadline);
    if (!answers) {
      std::fprintf(stderr, "corectl: warning: the debug file of build-id %s was not read: %s\n",
                   common::printable(build_id).c_str(),
                   common::printable(answers.error().message).c_str());
      continue;
    }
    for (size_t i = 0; i < wanted.size(); ++i) {
      nlohmann::json& f = *wanted[i].frame;
      const LookupAnswer& a = (*answers)[i];
      bool did = false;
      if (f.value("symbol", nlohmann::json()).is_null() && a.symbol) {
        char hex[24];
        std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(a.symbol_offset));
        f["symbol"] = {{"name", *a.symbol}, {"offset", hex}, {"verified", true}};
        did = true;
      }
      if (a.file) {
        f["file"] = *a.file;
        f["line"] = a.line;
        did = true;
      }
      if (did) {
        f["enriched"] = "debuginfod";
        ++changed;
      }
    }
  }
  return changed;
}

} // namespace cli
