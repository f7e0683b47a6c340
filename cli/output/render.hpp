// Human output: aligned tables that fit the terminal, colour only on a terminal, and names from
// crashed processes made harmless before they reach it.
#pragma once

#include "cli/catalog/catalog.hpp"
#include "cli/output/term.hpp"
#include "common/base/escape.hpp"
#include "common/base/units.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

// Text safe for a terminal (common/base/escape.hpp): every string from crash data or the store goes
// through it before it is printed.
using common::printable;

using common::human_size; // "1.5 MiB"; "0 B" (common/base/units.hpp)

// Local time with its weekday and zone, as coredumpctl prints it and --since reads it back:
// "Sun 2026-11-22 02:55:15 UTC" (set TZ for another zone); "-" for 0.
std::string local_time(int64_t epoch_seconds);

// One-word core state: "stored", "truncated" (or another reason a core was kept with),
// "removed" (by retention), or "none:<reason>".
std::string core_state(const Crash& c);

// Crashes that share a crash.signature (or, without one, an executable and a signal).
struct Group {
  std::string signature; // empty for the fallback group (executable + signal)
  std::string executable_key;
  int signal = 0;
  std::string signal_name;
  size_t count = 0;
  int64_t first = 0;
  int64_t last = 0;
  std::vector<std::string> hosts;       // distinct, sorted
  std::vector<std::string> executables; // distinct, sorted
  std::string site;
  std::string last_id;
  std::string key; // common::group_key(): what resolve takes and the state files hold
  // Its life (verbs/groups.cpp): "new", "ongoing", "resolved", "regressed"; the versions its
  // crashes ran with, oldest first; the resolve mark ("libcrashy1=2.0-1"), "" when none.
  std::string state;
  std::vector<std::string> versions;
  std::string resolved_in;
  std::string continues; // the group it continues (an older signature version), "" when none
};
// Groups crashes by crash.signature, or by executable + signal when a record has none; groups
// are ordered by last crash (newest last), like list. Fills neither the state nor the versions.
std::vector<Group> group_crashes(const std::vector<Crash>& crashes);

// A table: a header and rows of cells; `shrink` columns give up width (from the left, keeping
// the end of the text, which is the informative part of a path) when the terminal is narrow.
struct Column {
  std::string header;
  bool right = false;    // right-aligned (numbers)
  size_t min_width = 0;  // when > 0 the column may shrink down to this
  bool keep_end = false; // shrink by cutting the start (paths) rather than the end
  std::string_view (*sgr)(std::string_view cell) = nullptr; // colour of a cell, "" for none
};
// Legend::hide leaves the header line out (--no-legend), for scripts that read columns.
enum class Legend { show, hide };
void print_table(const Term& term, const std::vector<Column>& columns,
                 const std::vector<std::vector<std::string>>& rows, Legend legend = Legend::show);

void print_list(const Term& term, const std::vector<Crash>& crashes, size_t id_abbrev,
                Legend legend = Legend::show);
void print_groups(const Term& term, const std::vector<Group>& groups, Legend legend = Legend::show);
// One JSON object on stdout: a line, or indented when `pretty`. On a terminal (or its pager),
// everything beyond ASCII is written as \uNNNN.
void print_json(const nlohmann::json& j, bool pretty);

// Where info says a record and its core are: in the store, or a core given with --file.
struct InfoPlaces {
  std::string core_file; // absolute path, or the path given
  bool core_file_exists = false;
  std::string record_file; // "" for a core given with --file (no record)
  // The runtime's report kept beside the record (its first bytes, as read), and how many bytes
  // of the file were not read; nullopt when none was found.
  std::optional<std::string> runtime_report;
  uint64_t runtime_report_rest = 0;
  std::string runtime_report_absent; // why there is none to show ("" : the stored one is missing)
};

// Everything in a record, readable.
void print_info(const Term& term, const FullRecord& full, const InfoPlaces& places);

// info's block on what changed since the group's previous and first crash (the record JSON's
// `changes`, set by corectl), appended to `out`; nothing when there is none.
void print_changes(const Term& term, const nlohmann::json& record, std::string& out);
// "  (libc6 2.36-9+deb12u4)": the owner that the `packages` section names for mapping `m`.
std::string owner_suffix(const nlohmann::json& packages, const nlohmann::json& m);

} // namespace cli
