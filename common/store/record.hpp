// The crash record: one JSON file per crash, the commit point of a capture.
#pragma once

#include "common/base/error.hpp"
#include "common/record/bound.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace common {

inline constexpr int k_record_schema = 2;

// Why a core is (or is not) stored; each policy decision of the handler is one of these.
enum class CoreReason {
  stored,       // complete core stored
  truncated,    // stored, but cut at the size cap, the free-space floor or the quota
  rlimit,       // the crasher's RLIMIT_CORE (%c) was below a page: it asked for no core
  too_large,    // the cap would leave too little to be useful (cap below one page)
  disk_full,    // free space was already below keep_free
  quota,        // the store already uses max_use
  rate_limited, // too many cores from this executable recently
  busy,         // max_captures captures were already running: recorded on the lean path
  empty,        // the kernel sent no data
  not_elf,      // the data was not an ELF core; stored as received for inspection
  error,        // an I/O or other failure; see core.error
};

std::string_view to_string(CoreReason r);
std::optional<CoreReason> parse_core_reason(std::string_view s);

// Who may be given the core: the crashing user, or root only (setuid and similar cores).
enum class CoreAccess { owner, root_only };

struct CoreInfo {
  bool present = false;
  CoreReason reason = CoreReason::error;
  std::string path;                      // relative to the store root; empty when no core
  uint64_t size = 0;                     // bytes received from the kernel
  uint64_t stored_size = 0;              // bytes on disk (compressed)
  bool truncated = false;                // the stored core is not the whole core
  std::optional<uint64_t> expected_size; // the core's full size, from its program headers
  CoreAccess access = CoreAccess::root_only;
  std::string compression = "zstd";
  std::string error; // what failed, when reason is error (or a stored core hit one)
  // RFC 3339 time at which retention removed the stored core (corectl vacuum). `present` and
  // `reason` keep describing the capture, so series labels derived from them never change.
  std::optional<std::string> removed;
  // Retention had to remove the core while the uploader still had it to send (the quota left no
  // other core to take): the fleet will never see this core.
  bool removed_before_upload = false;
  // Keys of `core` this version does not know (a later version's), written back unchanged.
  nlohmann::json unknown = nlohmann::json::object();
};

struct HandlerInfo {
  std::string version;
  double duration_ms = 0;
  // Milliseconds from the start to the end of the core stream: how long the crashed process
  // waited on us (the rest is durability and analysis after its pipe was closed).
  double drained_ms = 0;
  // Milliseconds spent unwinding and symbolizing after the core was committed.
  double analysis_ms = 0;
  // How the analysis child ended: "ok", or why the backtraces are missing ("timeout", "out of
  // memory", "killed by SIGSEGV" …). Empty when no analysis ran (no ELF core).
  std::string analysis;
  std::vector<std::string> warnings; // malformed arguments and other things worth a look
  // What bound_record() cut to keep the record under k_record_max ("mappings: 37 of 400 kept").
  std::vector<std::string> cut;
  // Keys of `handler` this version does not know, written back unchanged.
  nlohmann::json unknown = nlohmann::json::object();
};

struct Record {
  int schema = k_record_schema;
  std::string id;
  std::string time; // RFC 3339 UTC
  std::string hostname;
  std::string executable; // decoded path, valid UTF-8
  bool executable_deleted = false;
  std::string executable_raw; // %E exactly as the kernel passed it (empty: not recorded)
  int signal = 0;
  std::string signal_name;
  std::optional<int64_t> pid;
  std::optional<int64_t> tid;
  std::optional<int64_t> uid;
  std::optional<int64_t> gid;
  std::string comm;
  std::string cmdline;
  std::optional<int> dump_mode;
  std::optional<uint64_t> rlimit_core;
  CoreInfo core;
  // Sections filled by the crash scanner and /proc collection; free-form objects whose keys are
  // documented in docs/record.md. Empty objects are omitted.
  nlohmann::json crash = nlohmann::json::object();
  nlohmann::json mappings = nlohmann::json::array();
  nlohmann::json container = nlohmann::json::object();
  // The crashed interpreter's Python stacks, read during the stream (docs/python-stacks.md).
  nlohmann::json python = nlohmann::json::object();
  // The host the handler ran on (machine_id, boot_id, hostname), read in its own, the initial,
  // namespaces; unlike `hostname` (%h, the crasher's UTS namespace) not the crasher's to choose.
  nlohmann::json node = nlohmann::json::object();
  // Who owns the crash's files (common/packages/owner_json, docs/record-packages.md).
  nlohmann::json packages = nlohmann::json::object();
  // The runtime's own crash report (handler/runtime_report): keys in docs/record.md.
  nlohmann::json runtime_report = nlohmann::json::object();
  HandlerInfo handler;
  // Store components the record lives under (derived, kept so readers need not recompute).
  std::string store_host;
  std::string store_exe;
  // Top-level keys this version does not know (sections of a later version, or a known
  // section of the wrong type), written back unchanged, so no rewrite loses them.
  nlohmann::json unknown = nlohmann::json::object();
};

// The record as JSON; every string is made valid UTF-8.
nlohmann::json to_json(const Record& r);
// Pretty JSON text with a trailing newline.
std::string to_json_text(const Record& r);

// Parses record text into a DOM after checking its size and nesting depth
// (common/base/json_bounds.hpp): a record the store's owner wrote must not exhaust a reader's
// stack.
Expected<nlohmann::json> parse_record_json(std::string_view text);

// Parses a record; missing optional fields take their defaults, wrong types are errors.
Expected<Record> record_from_json(const nlohmann::json& j);
Expected<Record> parse_record(std::string_view text);

// RFC 3339 UTC text for a time in seconds since the epoch ("2026-11-22T02:55:15Z").
std::string format_time(int64_t epoch_seconds);
// Parses what format_time() produces (and fractional seconds); nullopt when malformed.
std::optional<int64_t> parse_time(std::string_view text);

} // namespace common
