// The ledger: per-series crash counts of records that retention has removed, so that
// processcore_coredumps_total (ledger + live records) never goes down.
//
// File: <store>/.ledger.json (hidden: store listings skip it), written atomically by whoever
// retires records (corectl vacuum), read by the exporter. Its owner is the store user, so root's
// vacuum reads and rewrites it as a stream (scan_ledger): one entry at a time in, one out, in
// memory bounded by the records being retired, never by the file.
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
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace common {

inline constexpr const char* k_ledger_name = ".ledger.json";
// The largest ledger read (bytes): millions of series. Reading is streamed, so this bounds the
// time a read takes, not its memory.
inline constexpr size_t k_ledger_limit = 256ULL << 20;
// The longest single token (a string with its escapes, a number) in a ledger: a hostname is at
// most 64 bytes and an executable a path. The parser holds one token at a time.
inline constexpr size_t k_max_ledger_token = 64 << 10;

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

// One series of the ledger as a streaming read hands it over.
struct LedgerSeries {
  SeriesKey key;
  uint64_t count = 0;
  SeriesTimes times;
};

// What a streaming read calls, entry by entry in file order; either may be left empty.
struct LedgerVisitor {
  std::function<void(LedgerSeries&&)> series;
  std::function<void(std::string&&)> pending;
};

// Reads ledger JSON in one pass (a SAX parse, no DOM), handing each entry to `visit` as it is
// complete: memory stays bounded by one token (k_max_ledger_token) and the nesting depth,
// whatever the file's size. The store's owner writes the ledger and root's vacuum reads it. An
// error on anything malformed, possibly after some entries were visited: callers keep nothing
// of a failed read.
Expected<void> scan_ledger(std::string_view text, const LedgerVisitor& visit);

// Streams the store's ledger to `visit` (scan_ledger_file); a missing file visits nothing, a
// corrupt one is an error (possibly after some entries were visited).
Expected<void> scan_store_ledger(const Store& store, const LedgerVisitor& visit);

// Reads the ledger into memory (its size is then that of its distinct series and pending ids);
// a missing file is an empty ledger, a corrupt one an error.
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
