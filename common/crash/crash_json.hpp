// The record's `crash` object and `mappings` array, from the scanner's facts.
//
// Shape (documented in docs/record-crash.md): every key of `crash` is always present and null
// when unknown, so readers need no existence checks; addresses and offsets are "0x…" strings
// (JSON numbers lose precision past 2^53); strings from the core are made valid UTF-8.
#pragma once

#include "common/crash/analysis.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/symbolize.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <span>

namespace common {

// The one JSON mapping of a symbol: {"name", "offset", "verified"} (crash.symbol and every
// frame's symbol), or null.
nlohmann::json symbol_to_json(const std::optional<ResolvedSymbol>& symbol);
// One frame: {"pc", "trust", "module", "module_offset", "build_id", "symbol", "file", "line"}.
nlohmann::json frame_to_json(const Frame& frame);
// One thread: {"tid", "name", "state", "crashing", "frames", "error"}.
nlohmann::json thread_to_json(const ThreadTrace& thread);

// The `crash` object (record schema 2 with `analysis`; without, the scanner's facts only).
nlohmann::json crash_to_json(const CoreFacts& facts, const CrashAnalysis& analysis);
// Schema-1 shape kept for callers that resolve only the crash symbol.
nlohmann::json crash_to_json(const CoreFacts& facts,
                             const std::optional<ResolvedSymbol>& symbol = std::nullopt);

// The `mappings` array: one object per distinct NT_FILE path (at most 1024, in address order)
// with its build-id from the core and the findings about it from check_mapped_files().
nlohmann::json mappings_to_json(const CoreFacts& facts,
                                std::span<const MappingFinding> findings = {});

} // namespace common
