// Names the frames the handler could not, from debug files that debuginfod servers hold.
//
// Off the crash's critical path by design: the handler never touches the network; `corectl info`
// calls this when DEBUGINFOD_URLS names servers. Debug files are fetched by build-id (what the
// core saw, so a server cannot hand us the wrong binary's symbols unnoticed: libdwfl checks the
// file's build-id too), within a time budget and a cap on fetches.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

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

// The executable with this build-id (hex) from the servers DEBUGINFOD_URLS names: an absolute
// path in the client's cache, or nullopt (no servers, not found, or `budget` ran out).
std::optional<std::string>
fetch_executable(const std::string& build_id,
                 std::chrono::milliseconds budget = std::chrono::milliseconds(30000));

} // namespace cli
