// The ledger: per-series crash counts of records that retention has removed, so that
// processcore_coredumps_total (ledger + live records) never goes down.
//
// File: <store>/.ledger.json (hidden: store listings skip it), written atomically by whoever
// retires records (corectl vacuum), read by the exporter.
//
// Crash safety: retire_records() first rewrites the ledger with the counts added AND the ids
// listed as `pending`, then removes the records and cores, then rewrites the ledger without the
// pending ids. A reader counts a live record only if its id is not pending, so at every instant
// (and after a crash between the steps) each crash is counted exactly once.
#pragma once

#include "common/base/error.hpp"
#include "common/store/record.hpp"
#include "common/store/store.hpp"

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace common {

inline constexpr const char* k_ledger_name = ".ledger.json";

// The labels of one processcore_coredumps_total series.
struct SeriesKey {
  std::string hostname;   // record.hostname
  std::string executable; // record.executable (decoded path)
  std::string signal;     // signal name ("SEGV")
  bool core_present = false;
  auto operator<=>(const SeriesKey&) const = default;
};

// The series a record counts in. core_present is what the record says was captured, never
// whether the core file still exists, so removing a core does not move a crash between series.
SeriesKey series_of(const Record& r);

// Earliest and latest crash time (epoch seconds, 0 = unknown) of a series' removed records. The
// exporter needs them once the records are gone: the earliest orders executables for the label
// cap (so folding into "other" is stable across restarts), the latest feeds
// processcore_last_crash_timestamp_seconds.
struct SeriesTimes {
  int64_t first = 0;
  int64_t last = 0;
};

struct Ledger {
  std::map<SeriesKey, uint64_t> counts;   // crashes whose records were removed
  std::set<std::string> pending;          // ids being removed: counted here, not as live records
  std::map<SeriesKey, SeriesTimes> times; // crash times of the removed records, per series
};

// Reads the ledger; a missing file is an empty ledger, a corrupt one an error.
Expected<Ledger> read_ledger(const Store& store);

// Parses ledger JSON text (what ledger_to_text() produces); errors on anything malformed.
Expected<Ledger> parse_ledger(std::string_view text);
// The ledger as JSON text, series sorted, with a trailing newline.
std::string ledger_to_text(const Ledger& ledger);
// Replaces the ledger file atomically (readers see the old or the new ledger, never a mix).
Expected<void> write_ledger(const Store& store, const Ledger& ledger);

// One record to remove, as found by Store::for_each_record plus its parsed record.
struct RetireItem {
  std::string host; // store components
  std::string exe;
  std::string id;
  SeriesKey key;
  int64_t time = 0; // the record's crash time (epoch seconds; 0 = unknown)
};

// Folds the items into the ledger, then removes their records and cores (see the file comment
// for the order). Serialised against other retirers by flock() on the store root; items whose
// record is already gone or already pending are not counted again. Returns how many records
// were removed (a record that could not be removed stays pending: still counted exactly once).
Expected<size_t> retire_records(const Store& store, const std::vector<RetireItem>& items);

} // namespace common
