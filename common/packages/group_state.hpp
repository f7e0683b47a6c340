// The life of a crash group: when it was first seen, whether someone marked it fixed, and
// whether a crash after that mark is a regression. Two small files in the store's `.groups/`
// directory, beside the ledger, hold what the records alone cannot: the resolve marks
// (`resolved.json`, written by `corectl resolve` as root or the store user) and the exporter's
// seen-set (`seen.json`: every group it has counted, and its counters). Both survive restarts and
// retention; an index may cache them, but they are the truth. The store's owner can write them,
// so every reader validates them as untrusted input: bounded size, bounded entries, strict types.
// See docs/groups.md.
#pragma once

#include "common/base/error.hpp"

#include <nlohmann/json.hpp>

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace common {

inline constexpr const char* k_groups_dir = ".groups";
inline constexpr const char* k_marks_name = "resolved.json";
inline constexpr const char* k_seen_name = "seen.json";
// The largest groups file read (bytes): the entry bounds below need far less.
inline constexpr size_t k_groups_file_limit = 32ULL << 20;
// Marks kept; resolving more groups than this is refused.
inline constexpr size_t k_max_marks = 10000;
// Groups in the seen-set; beyond it the groups seen longest ago are forgotten (their counts
// stay; such a group, should it crash again, is new again).
inline constexpr size_t k_max_seen = 100000;
// Distinct label sets per counter; beyond it new ones count under hostname and executable
// "other" (as processcore_coredumps_total folds them).
inline constexpr size_t k_max_counter_series = 10000;
// The longest string in either file (a hostname, an executable path, a version, a key).
inline constexpr size_t k_max_group_text = 4096;
// Build-ids of a group remembered in a build-id mark.
inline constexpr size_t k_max_mark_builds = 64;

// A group's key: the crash signature, or, for records without one, "x:<signal>:<executable>"
// (no signature has a ':'), the executable-and-signal group `corectl groups` shows.
std::string group_key(std::string_view signature, std::string_view executable, int signal);

// "Fixed in": a package version, or an executable build-id.
struct ResolveMark {
  std::string group;    // the group key
  std::string package;  // PACKAGE=VERSION marks: the package …
  std::string version;  // … and the version the fix is in
  std::string build_id; // build-id marks: the fixed executable's build-id ("": the next build)
  // Build-id marks: the executable build-ids the group had crashed with when it was marked; a
  // later crash of one of them is an old build still running, not a regression.
  std::vector<std::string> builds_before;
  int64_t time = 0; // when it was marked (epoch seconds)
  int64_t uid = -1; // who marked it
  // The event a regression of this mark is counted once as: "<group>@<time>".
  std::string event_id() const;
  bool operator==(const ResolveMark&) const = default;
};

struct Marks {
  std::map<std::string, ResolveMark> by_group; // one mark per group: the latest
};

// Parses `--in`'s value: "PACKAGE=VERSION" (a Debian version) or an executable build-id (hex,
// 2 to 128 digits, lower-cased). An error names what is wrong.
Expected<ResolveMark> parse_resolve_target(std::string_view text);
// "libcrashy1=2.0-1", "build-id 3f1a…" or "the next build".
std::string describe_mark(const ResolveMark& mark);

// What a crash ran with, as far as regressions are concerned: its executable's build-id and the
// packages (with versions) of its executable and of the module the crash is in.
struct CrashVersion {
  std::string build_id;
  std::vector<std::pair<std::string, std::string>> packages; // (package, version), distinct
  bool operator==(const CrashVersion&) const = default;
};
// Reads it from a whole record (`mappings`, `packages.owners`, `crash.module`); anything
// malformed is left out.
CrashVersion crash_version(const nlohmann::json& record);
// "libcrashy1 2.0-1, build-id 9c02…": the versions a group was seen with, for display.
std::string describe_version(const CrashVersion& v);

// Whether a crash of `v`, after `mark`, means the fix did not hold. A package mark: when the
// crash's version of that package is not older than the fixed one (Debian ordering); a crash
// that does not name the package cannot be shown to be older, so it counts. A build-id mark:
// when the executable's build-id is not one the group crashed with before the mark (the fixed
// build, or a later one); an unknown build-id counts.
bool regresses(const ResolveMark& mark, const CrashVersion& v);

// The labels of the new-signature and regression counters (never the signature).
struct GroupLabel {
  std::string hostname;
  std::string executable;
  std::string signal;
  auto operator<=>(const GroupLabel&) const = default;
};

struct SeenGroup {
  int64_t first = 0; // first crash time (of the group it continues, when `parent` is set)
  GroupLabel label;  // where it was first seen
  // A group that continues an older one (a new signature version of the same crash:
  // crash.signature_refines); it was not new, and marks on the parent apply to it.
  std::string parent;
  bool operator==(const SeenGroup&) const = default;
};

// The exporter's seen-set and counters.
struct Seen {
  std::map<std::string, SeenGroup> groups;
  std::map<GroupLabel, uint64_t> new_counts;  // processcore_new_signatures_total
  std::map<GroupLabel, uint64_t> regressions; // processcore_regressions_total
  std::set<std::string> regressed;            // ResolveMark::event_id()s already counted
  bool operator==(const Seen&) const = default;
};

// The files' JSON text ({"version": 1, …}, keys sorted, a trailing newline) and back. Parsing
// checks every bound above and every type; an error on anything else.
std::string marks_to_text(const Marks& marks);
Expected<Marks> parse_marks(std::string_view text);
std::string seen_to_text(const Seen& seen);
Expected<Seen> parse_seen(std::string_view text);

// The files in the store whose root is `store_fd`: a missing directory or file is nullopt; a
// link, a non-regular file, a too-large or malformed one is an error.
Expected<std::optional<Marks>> read_marks(int store_fd);
Expected<std::optional<Seen>> read_seen(int store_fd);
// Replaces a file atomically (mode 0640), creating `.groups/` (0750) when missing.
Expected<void> write_marks(int store_fd, const Marks& marks);
Expected<void> write_seen(int store_fd, const Seen& seen);

// Several stores' files as one (a fleet's bucket, docs/groups.md#several-hosts): for each group
// the latest mark by its time wins (ties: the larger mark, so the result does not depend on the
// order); the seen-set is a union in which a group's first crash is the earliest, with that
// crash's labels. Counters and counted events are each store's own and are left out.
void merge_marks(Marks& into, const Marks& from);
void merge_seen_groups(Seen& into, const Seen& from);

// A group's state as `corectl groups` shows it.
enum class GroupState { new_group, ongoing, resolved, regressed };
// "new", "ongoing", "resolved", "regressed".
std::string_view to_string(GroupState s);
// `first`: the group's first crash; `window`: how long a group stays new (seconds); `mark`: its
// resolve mark, if any; `regressed`: a crash after the mark regresses it.
GroupState group_state(int64_t first, int64_t now, int64_t window, const ResolveMark* mark,
                       bool regressed);

} // namespace common
