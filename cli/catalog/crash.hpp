// One crash as list views see it: the summary of a record (catalog.hpp loads them, cache.hpp
// keeps them between runs). A leaf header, so the catalog and its cache need not include each
// other.
#pragma once

#include "common/store/record.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace cli {

// What list and groups need from one record; kept small so 100,000 of them load in well under
// a second (the full record is re-read for info, dump and --json).
struct Crash {
  std::string host_dir; // store components
  std::string exe_dir;
  std::string id;
  int64_t time = 0; // seconds since the epoch; 0 when the record's time is malformed
  std::string hostname;
  std::string executable;
  bool executable_deleted = false;
  int signal = 0;
  std::string signal_name;
  std::optional<int64_t> pid;
  std::optional<int64_t> uid;
  std::string comm;
  common::CoreReason core_reason = common::CoreReason::error;
  bool core_present = false;
  uint64_t core_size = 0;
  bool core_removed = false; // retention removed the stored core (core.removed)
  bool core_file = false;    // <id>.core.zst exists
  std::string signature;     // crash.signature, "" when the record has none
  std::string site;          // crash.symbol, else module+offset, else ""
};

} // namespace cli
