// The record's `crash` and `mappings` sections (common/record/), from the scanner's facts.
//
// Shape (documented in docs/record-crash.md): every key of `crash` is always present and null
// when unknown, so readers need no existence checks; addresses and offsets are "0x…" strings
// (JSON numbers lose precision past 2^53); strings from the core are made valid UTF-8.
#pragma once

#include "common/crash/analysis.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/symbolize.hpp"
#include "common/record/crash.hpp"
#include "common/record/mapping.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <span>
#include <string>

namespace common {

// The `crash` section (record schema 2): the scanner's facts and what the analysis added (an
// empty CrashAnalysis gives the facts alone, with no stacks and the scanner's v1 signature).
record::Crash crash_record(const CoreFacts& facts, const CrashAnalysis& analysis);
// The same as JSON (record::to_json of it).
nlohmann::json crash_to_json(const CoreFacts& facts, const CrashAnalysis& analysis);

// What the `crash` object says beyond the delivered signal, for one line of text: " raised by
// the program's crash handler after SIGSEGV (SEGV_MAPERR) at 0x10 in crash_here" (from
// `original_fault`), " (seccomp blocked chown (92) on x86_64)" (from `blocked_syscall`), else
// empty (record::cause_detail). `crash` is a stored record's and untrusted: any field of the
// wrong type is left out.
std::string crash_cause_detail(const nlohmann::json& crash);

// The `mappings` array: one object per distinct NT_FILE path (at most 1024, in address order)
// with its build-id from the core and the findings about it from check_mapped_files().
record::Mappings mapping_records(const CoreFacts& facts,
                                 std::span<const MappingFinding> findings = {});
// The same as JSON (record::to_json of it).
nlohmann::json mappings_to_json(const CoreFacts& facts,
                                std::span<const MappingFinding> findings = {});

} // namespace common
