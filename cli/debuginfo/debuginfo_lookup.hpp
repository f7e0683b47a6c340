// Symbols and source lines from a debug file a debuginfod server returned, looked up in the
// sandboxed child of common/sandbox: the file is the server's choice, and libdw and libelf may be
// driven by it into crashing or running its code, in corectl, which root may run. The child
// holds the file's descriptor and its result pipe only, as the dedicated analysis uid when
// corectl is root; its answer is bounded and checked field by field.
#pragma once

#include "common/base/error.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace cli {

struct LookupQuery {
  uint64_t pc = 0;    // the frame's pc, as recorded
  uint64_t start = 0; // where the module's first mapping started
  bool exact = false; // the pc itself (frame #0), not a return address: looked up at pc, not pc − 1
};

struct LookupAnswer {
  std::optional<std::string> symbol; // demangled, at most 4096 bytes
  uint64_t symbol_offset = 0;        // of pc from the symbol's start
  std::optional<std::string> file;   // at most 4096 bytes
  int line = 0;
};

// One answer per query, in order; an error (the child's failure, or an answer that is not what
// the child is meant to write) when there is none.
common::Expected<std::vector<LookupAnswer>>
lookup_in_child(int debug_fd, std::span<const LookupQuery> queries,
                std::chrono::steady_clock::time_point deadline);

} // namespace cli
