// The configuration file shared by the handler, the exporter and corectl.
#pragma once

#include "common/base/error.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace common {

inline constexpr const char* k_default_config_path = "/etc/process-core/process-core.conf";

// An amount of disk: absolute bytes, or a percentage of the store's file system.
struct DiskAmount {
  uint64_t bytes = 0;
  double percent = 0; // used when > 0
  // Bytes for a file system of `fs_size` bytes, capped at `cap` when a percentage (0 = no cap).
  uint64_t resolve(uint64_t fs_size, uint64_t cap = 0) const;
};

struct Config {
  std::string store = "/var/lib/process-core"; // store root
  std::string user = "process-core";           // the handler drops to this user (never root)
  int compression_level = 1;                   // zstd level, 1..19
  int compression_threads = 1;                 // zstd worker threads (0 = inline)
  uint64_t max_core_size = 16ULL << 30;        // cores are cut (and marked truncated) here
  DiskAmount keep_free{4ULL << 30, 15};        // free space never taken below this
  DiskAmount max_use{4ULL << 30, 10};          // the store's total size cap
  unsigned rate_limit_burst = 10;              // cores per (uid, executable) per interval (0 = off)
  unsigned rate_limit_interval = 3600;         // seconds
  // Admission control: full captures (stream + compress) at once; later crashes take the lean
  // path (record without core, reason "busy"). Slots are lock files under runtime_dir.
  unsigned max_captures = 8;
  // Of those, at most this many for one uid (%u): one user's stalled dumps leave the rest free.
  unsigned max_captures_per_user = 4;
  std::string runtime_dir = "/run/process-core"; // root-only: capture slots, rate-limit locks
  unsigned capture_timeout = 300;                // seconds of streaming the core before it is cut
  unsigned analysis_timeout = 30; // seconds for everything after the stream, record included
  // Memory the forked child that unwinds and symbolizes may map beyond what it inherits
  // (its RLIMIT_AS and RLIMIT_DATA are set this far above its use when it starts).
  uint64_t analysis_memory_limit = 512ULL << 20;
  unsigned max_executables_per_host = 200; // exporter label cap (per host)
  unsigned max_hosts = 500;                // exporter label cap (hostnames)
  unsigned max_series = 50000;             // exporter: exported series in all (fits MemoryMax)
  std::string listen = "127.0.0.1:9464";   // exporter address
  std::string kernel_log = "/dev/kmsg";    // exporter: counts dumps the kernel lost ("" = off)
  // Record retention (corectl vacuum); records beyond these are retired through the ledger.
  // Crashes without cores (disk full, rate-limited) still write records: a bound by default.
  uint64_t max_records = 10000; // newest records kept, store-wide (0 = no limit)
  uint64_t max_record_age = 0;  // seconds; older records are retired (0 = no limit)
};

// Reads `key = value` lines ('#' comments). Unknown keys and bad values are reported in
// `warnings` and leave the default in place; a missing file is not an error when
// `missing_ok` (the defaults apply). A file owned by someone other than root (or the caller),
// or writable by group or others, is ignored with a warning: the defaults apply.
struct ConfigResult {
  Config config;
  std::vector<std::string> warnings;
};
enum class MissingOk { no, yes };
Expected<ConfigResult> load_config(const std::string& path, MissingOk missing_ok);
// Parses configuration text (for tests and tools).
ConfigResult parse_config(std::string_view text);

} // namespace common
