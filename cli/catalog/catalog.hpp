// The store as corectl sees it: every record summarised, filtered, and found by id prefix.
#pragma once

#include "cli/catalog/crash.hpp"
#include "common/base/error.hpp"
#include "common/store/record.hpp"
#include "common/store/store.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cli {

// Which records a read verb shows; an empty list means "any". Values of one option are OR-ed,
// different options AND-ed.
struct Filter {
  std::vector<std::string> hosts;       // exact hostname
  std::vector<std::string> executables; // full path, or basename when it has no '/'
  std::vector<int> signals;
  std::vector<std::string> ids; // id prefixes (lower case)
  std::vector<int64_t> pids;
  std::vector<int64_t> uids;
  std::vector<std::string> comms;      // exact comm
  std::vector<std::string> names;      // comm or executable basename (a bare word match)
  std::vector<std::string> signatures; // crash.signature prefixes
  std::optional<int64_t> since;        // inclusive, seconds since the epoch
  std::optional<int64_t> until;        // inclusive
  // systemd units (container.unit: UNIT=, COREDUMP_UNIT=, _SYSTEMD_UNIT=), exact as shown. A
  // summary does not hold the unit: matches() leaves these out, the caller checks them on the
  // full record with matches_unit() (select.hpp's selects()).
  std::vector<std::string> units;
  bool matches(const Crash& c) const;
  bool matches_unit(const nlohmann::json& container) const;
};

// Why some of the store could not be read; corectl turns these into one message each.
struct LoadProblems {
  size_t denied = 0;        // directories or records we may not read
  size_t unreadable = 0;    // other read errors
  size_t malformed = 0;     // records that did not parse
  size_t readable_dirs = 0; // <host>/<exe> directories read (a user may read only their own)
  std::string first;        // the first message, for the error report
};

struct Catalog {
  std::vector<Crash> crashes; // sorted by time, then id (oldest first)
  LoadProblems problems;
  size_t id_abbrev = 8; // prefix length that tells every id of the store apart (at least 8)
};

// Loads every record matching `filter` (directories are pruned by the sanitized host or
// executable name where the filter allows it), reading directories in parallel. With
// Cache::yes, summaries of unchanged directories come from the per-user cache (cache.hpp).
enum class Cache { no, yes };
Catalog load_catalog(const common::Store& store, const Filter& filter, Cache cache = Cache::yes);

// Brings the store's index (common/index) up to date with the files when the caller may write
// it (the store's owner, no other writer): after vacuum and remove changed the store. With
// IndexMissing::skip nothing is done when there is no valid index yet (building one reads every
// record: the removal service answers its user first).
enum class IndexMissing { build, skip };
void refresh_index(const common::Store& store, IndexMissing missing);

// One record id located in the store.
struct Located {
  std::string host_dir;
  std::string exe_dir;
  std::string id;
};

// Why an id prefix did not resolve.
enum class LookupError { bad_prefix, not_found, ambiguous, denied };
struct LookupFailure {
  LookupError kind;
  std::string message;
  std::vector<Located> candidates; // for ambiguous prefixes
};

// Resolves a full id or any unique prefix of one (like git) by listing names only.
// An id prefix as typed, lowercased; bad_prefix unless it is 1 to 16 hex characters.
std::expected<std::string, LookupFailure> id_prefix(std::string_view prefix);

std::expected<Located, LookupFailure> resolve_id(const common::Store& store,
                                                 std::string_view prefix);

// Reads and parses one record; the raw JSON is kept for --json and sections we render.
struct FullRecord {
  common::Record record;
  nlohmann::json json;
};
common::Expected<FullRecord> read_record(const common::Store& store, const Located& where);

// A record's text parsed as read_record() does, the id checked against `where`'s; `place` names
// the record in messages (a path, or an s3:// URL).
common::Expected<FullRecord> parse_full_record(std::string_view text, const Located& where,
                                               const std::string& place);

// The summary of a record's text, as the catalog reads each record.
common::Expected<Crash> summarise(std::string_view text);

// Adds a record id (16 hex digits) to `ids` as its value; anything else is no record's id.
void add_id(std::vector<uint64_t>& ids, std::string_view id);
// The id prefix length (at least 8) that tells every id of `ids` apart; sorts `ids`.
size_t abbrev_length(std::vector<uint64_t>& ids);

} // namespace cli
