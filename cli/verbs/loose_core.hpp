// --file PATH: a core that is not in the store (info, dump, debug on it). It is read with the
// caller's rights and analysed by the crash layer the handler uses (common/crash: the scanner,
// then unwinding and symbols), into a record that lives only for this run.
#pragma once

#include "cli/catalog/catalog.hpp"
#include "cli/exit.hpp"
#include "common/base/fd.hpp"

#include <expected>
#include <string>

namespace cli {

struct LooseCore {
  common::UniqueFd fd; // the file, open for reading, at offset 0
  std::string path;    // as given
  FullRecord full;     // what the analysis found, as a record (not stored anywhere)
};

// Opens `path` (a regular file: never waits on a FIFO or a device) and analyses it; reports
// why not (the exit status). `analyse` false only checks and opens it (dump).
std::expected<LooseCore, Exit> open_loose_core(const std::string& path, bool analyse = true);

// Bound on the analysis of a loose core, as the handler's (common/crash/unwind.hpp deadline).
inline constexpr int k_loose_analysis_seconds = 10;

} // namespace cli
