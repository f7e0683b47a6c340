// The exporter's counting model: which crashes each processcore_coredumps_total series counts, kept
// consistent with the store's records and ledger, and never lower than a value already exported.
// No I/O here: the store watcher feeds it, the metrics collector reads snapshots of it.
#pragma once

#include "common/store/ledger.hpp"
#include "exporter/group_tracker.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace exporter {

// The executable label of the series that executables beyond the per-host cap are folded into.
inline constexpr std::string_view k_other_executable = "other";
// The hostname label that hosts beyond the host cap are folded into (a container chooses its
// hostname, so distinct hostnames cost an attacker nothing).
inline constexpr std::string_view k_other_host = "other";

// Why a file in the store was not counted.
enum class SkipReason : uint8_t {
  malformed, // not a valid record (or ledger): bad JSON, wrong types, id mismatch
  io,        // could not be opened or read
  foreign,   // a name the store layout does not produce
};
inline constexpr size_t k_skip_reasons = 3;
// "malformed", "io", "foreign": the `reason` label value.
std::string_view to_string(SkipReason r);

// A record id (16 lower-case hex characters) as a number: ids are the bulk of the per-record
// state, and 8 bytes beat a heap-allocated 16-character string. nullopt for anything else.
std::optional<uint64_t> parse_record_id(std::string_view id);
// The id text parse_record_id() accepted.
std::string format_record_id(uint64_t id);

// One exported processcore_coredumps_total series (labels after folding).
struct SeriesSample {
  common::SeriesKey labels;
  uint64_t count = 0;
  int64_t last_crash = 0; // epoch seconds of the latest crash counted, 0 when unknown
};

// Per-hostname gauges.
struct HostSample {
  std::string hostname;
  uint64_t stored_bytes = 0;       // allocated bytes of its records and cores
  uint64_t folded_executables = 0; // distinct executables counted under "other"
};

// Everything /metrics shows, copied under the lock so serialisation happens outside it.
struct Snapshot {
  std::vector<SeriesSample> series;
  std::vector<HostSample> hosts; // after folding: hostname "other" stands for the folded hosts
  uint64_t folded_hosts = 0;     // distinct hostnames counted under hostname="other"
  uint64_t folded_series = 0;    // series folded into hostname/executable "other" by max_series
  std::array<uint64_t, k_skip_reasons> skipped{}; // files not counted, by SkipReason
  uint64_t records = 0;                           // records currently in the store
  uint64_t rescans = 0;                           // full rescans after the first scan
  double scan_seconds = 0;                        // duration of the last full scan
  // processcore_new_signatures_total and processcore_regressions_total (group_tracker.hpp).
  std::vector<std::pair<common::GroupLabel, uint64_t>> new_signatures;
  std::vector<std::pair<common::GroupLabel, uint64_t>> regressions;
};

class CrashState {
public:
  // `max_executables_per_host` = 0 means no cap; so does `max_hosts` = 0. Hosts beyond
  // `max_hosts` (latest first crash first) are counted under hostname="other", whose
  // executables the per-host cap bounds like any host's. Once `max_series` exported series
  // exist (0: no cap), a new series is counted under hostname="other", executable="other" with
  // its own signal and core_present: at most one more series per signal and core_present.
  explicit CrashState(unsigned max_executables_per_host, unsigned max_hosts = 0,
                      unsigned max_series = 0);
  // The indexes compare through pointers into the state's own vectors.
  CrashState(const CrashState&) = delete;
  CrashState& operator=(const CrashState&) = delete;

  // True when a record with this id is known (in any directory).
  bool has_record(uint64_t id) const { return m_records.contains(id); }
  // A committed record file <id>.json in store directory `dir`. Returns false, changing
  // nothing, when the id is already known (a second event for the same file, or a copy).
  bool add_record(uint64_t id, uint32_t dir, const common::SeriesKey& key, int64_t time,
                  uint64_t record_bytes, uint64_t core_bytes);
  // The record file left `dir`. Its crash stays counted if the ledger has it; if not (removed
  // outside `corectl vacuum`), settle() keeps the count anyway for the life of this process.
  void remove_record(uint64_t id, uint32_t dir);
  // The core file of a known record appeared or went away (bytes 0).
  void set_core_bytes(uint64_t id, uint32_t dir, uint64_t bytes);

  // Full rescans: begin_rescan(), then touch() every record still there (add_record() for new
  // ones), then end_rescan() removes the records that were not seen.
  void begin_rescan();
  void touch(uint64_t id);
  void end_rescan();

  // Reads a ledger and installs it. `read` hands every entry to the visitor it is given (as
  // common::scan_store_ledger does) and takes the entries as they come: the ledger is never held
  // whole, only 32 bytes a series for the time of the read. When `read` fails, the state is as
  // before and its error is returned. `exists(id, dir)` says whether a record file is still
  // there: records of series whose ledger count grew are checked, because the ledger may already
  // count (and no longer list as pending) records whose deletion events are still queued.
  using LedgerReader = std::function<common::Expected<void>(const common::LedgerVisitor&)>;
  common::Expected<void> load_ledger(const LedgerReader& read,
                                     const std::function<bool(uint64_t id, uint32_t dir)>& exists);
  // The same with a ledger already in memory.
  void set_ledger(const common::Ledger& ledger,
                  const std::function<bool(uint64_t id, uint32_t dir)>& exists);
  // True when `id` is pending in the current ledger.
  bool is_pending(uint64_t id) const { return m_pending.contains(id); }

  // Marks a store file (path relative to the root) as skipped, or as fine again (nullopt).
  void set_skipped(const std::string& relpath, std::optional<SkipReason> reason);
  // True when that file is currently marked skipped.
  bool is_skipped(const std::string& relpath) const { return m_skipped.contains(relpath); }
  void set_scan_seconds(double seconds) { m_scan_seconds = seconds; }
  void count_rescan() { ++m_rescans; }

  // Call after each batch of changes: assigns labels to new executables (earliest crash first)
  // and lifts any series that would otherwise go down (see crash_state.cpp).
  void settle();

  // The number of records currently known (what processcore_records shows).
  size_t records() const { return m_records.size(); }

  // What /metrics shows now (as of the last settle()).
  Snapshot snapshot() const;

  // The crash groups seen and their counters; fed and settled by the store watcher.
  GroupTracker& groups() { return m_groups; }

private:
  static constexpr uint32_t k_unassigned = UINT32_MAX;

  enum class Fold : uint8_t { unassigned, own, other };

  // One (hostname, executable): the unit the per-host cap counts.
  struct Executable {
    std::string hostname;
    std::string executable;
    int64_t earliest = INT64_MAX; // earliest crash seen (records and ledger)
    Fold fold = Fold::unassigned;
    Fold host_fold = Fold::unassigned; // its host's: own, or counted under "other"
  };

  // One true series (real executable label), before folding: its labels are those of its
  // executable plus a signal (interned: a handful of names) and core_present, 48 bytes in all.
  struct Series {
    uint32_t executable = 0;          // index into m_executables
    uint32_t signal = 0;              // index into m_signals
    uint32_t exported = k_unassigned; // index into m_exported, once the fold is decided
    bool core_present = false;
    uint64_t live = 0;   // records present and not pending in the ledger
    uint64_t ledger = 0; // crashes whose records were retired
    uint64_t bytes = 0;  // allocated bytes of its records and cores
    int64_t last = 0;    // latest crash ever seen for it
  };

  // An exported series. `carry` holds crashes this process counted whose records vanished
  // without reaching the ledger; `value` is the last value exported.
  struct Exported {
    common::SeriesKey labels;
    uint64_t carry = 0;
    uint64_t value = 0;
    int64_t last = 0;
  };

  // Per record: 8-byte key + 24 bytes, so 100,000 records take a few MiB.
  struct Entry {
    uint64_t core_bytes = 0;
    uint32_t series = 0;
    uint32_t dir = 0;
    uint32_t record_bytes = 0;
    uint16_t generation = 0;
    bool counted = false; // included in its series' `live`
  };

  // Orders indexes into a vector by the value they stand for, and looks them up by value, so
  // that an index holds no second copy of the strings.
  template <class T, auto Project>
  struct IndexLess {
    using is_transparent = void;
    const std::vector<T>* v;
    bool operator()(uint32_t a, uint32_t b) const { return Project((*v)[a]) < Project((*v)[b]); }
    template <class K>
    bool operator()(uint32_t a, const K& b) const {
      return Project((*v)[a]) < b;
    }
    template <class K>
    bool operator()(const K& a, uint32_t b) const {
      return a < Project((*v)[b]);
    }
  };
  using ExeView = std::pair<std::string_view, std::string_view>;
  static ExeView exe_view(const Executable& e) { return {e.hostname, e.executable}; }
  // (label hostname, executable): the pair the per-host cap counts once labelled.
  static ExeView label_view(const Executable& e) {
    return {e.host_fold == Fold::other ? k_other_host : std::string_view(e.hostname), e.executable};
  }
  static const common::SeriesKey& labels_of(const Exported& e) { return e.labels; }
  static uint64_t series_key(uint32_t exe, uint32_t signal, bool core) {
    return (uint64_t{exe} << 32) | (uint64_t{signal} << 1) | (core ? 1U : 0U);
  }

  uint32_t series_index(const common::SeriesKey& key);
  // Forgets the series, executables and signals from these counts on (a failed ledger read).
  void truncate(size_t series, size_t executables, size_t signals);
  void drop(std::unordered_map<uint64_t, Entry>::iterator it);

  unsigned m_cap;
  unsigned m_host_cap;
  unsigned m_series_cap;
  uint64_t m_folded_series = 0;
  std::unordered_map<std::string, Fold> m_hosts; // hostname → own or other, once decided
  uint64_t m_own_hosts = 0;
  uint64_t m_folded_hosts = 0;
  std::unordered_map<uint64_t, Entry> m_records;
  std::unordered_set<uint64_t> m_pending;
  std::vector<std::string> m_signals;
  std::map<std::string, uint32_t, std::less<>> m_signal_index;
  std::vector<Series> m_series;
  std::unordered_map<uint64_t, uint32_t> m_series_index; // series_key() → index
  std::vector<Executable> m_executables;
  std::set<uint32_t, IndexLess<Executable, exe_view>> m_executable_index{
      IndexLess<Executable, exe_view>{&m_executables}};
  // Executables with their own label, by (label host, executable).
  std::set<uint32_t, IndexLess<Executable, label_view>> m_labelled{
      IndexLess<Executable, label_view>{&m_executables}};
  std::map<std::string, std::pair<uint64_t, uint64_t>> m_host_folds; // hostname → (own, other)
  std::vector<Exported> m_exported;
  std::set<uint32_t, IndexLess<Exported, labels_of>> m_exported_index{
      IndexLess<Exported, labels_of>{&m_exported}};
  std::map<std::string, SkipReason> m_skipped;
  // Skipped files named in the log this hour (set_skipped), a bound the store's owner cannot move.
  static constexpr unsigned k_max_named_skips = 100;
  unsigned m_named = 0;
  std::chrono::steady_clock::time_point m_named_since{};
  uint16_t m_generation = 0;
  uint64_t m_rescans = 0;
  double m_scan_seconds = 0;
  GroupTracker m_groups;
};

} // namespace exporter
