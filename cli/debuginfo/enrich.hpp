// Names the frames the handler could not, from debug files that debuginfod servers hold.
//
// Off the crash's critical path by design: the handler never touches the network; `corectl info`
// calls this when DEBUGINFOD_URLS names servers. Debug files are fetched by build-id (what the
// core saw) within a time budget and a cap on fetches. A server may answer with any file: what it
// returns is used only when its own build-id is the one asked for (neither the client nor
// libdwfl compares them), else ignored with a warning.
#pragma once

#include "common/base/fd.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace cli {

struct EnrichOptions {
  std::chrono::milliseconds budget{10000}; // for all fetches together
  size_t max_build_ids = 16;               // distinct modules fetched at most
};

// Fills `symbol`, `file` and `line` of the frames of crash.stacks (schema 2) that have a
// build-id and lack a name or a source line, and marks them "enriched": "debuginfod". Returns
// the number of frames changed; 0 without DEBUGINFOD_URLS. `mappings` (the record's) says where
// each module was loaded.
size_t enrich_with_debuginfod(nlohmann::json& crash, const nlohmann::json& mappings,
                              const EnrichOptions& options = {});

// A file a debuginfod server returned: open for reading, and where the client cached it.
struct FetchedFile {
  common::UniqueFd fd;
  std::string path;
};

// The executable with this build-id (hex) from the servers DEBUGINFOD_URLS names, checked to
// carry that build-id; nullopt (no servers, not found, `budget` ran out, or another file: then
// with a warning on stderr).
std::optional<FetchedFile>
fetch_executable(const std::string& build_id,
                 std::chrono::milliseconds budget = std::chrono::milliseconds(30000));

// True when the ELF file at `path` carries GNU build-id `build_id` (hex, any case); else false,
// with "corectl: warning: …" on stderr naming `what` (a server's answer that is another file).
bool has_build_id(const std::string& path, const std::string& build_id, std::string_view what);

} // namespace cli
