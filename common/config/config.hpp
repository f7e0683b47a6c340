// The configuration file shared by the handler, the exporter and corectl: its schema, one table
// row per key (name, kind of value, bounds, default, one-line doc), and the parser built on it.
#pragma once

#include "common/base/error.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace common {

inline constexpr const char* k_default_config_path = "/etc/process-core/process-core.conf";

// An amount of disk: absolute bytes, or a percentage of the store's file system.
struct DiskAmount {
  uint64_t bytes = 0;
  double percent = 0; // used when > 0
  // Bytes for a file system of `fs_size` bytes, capped at `cap` when a percentage (0 = no cap).
  uint64_t resolve(uint64_t fs_size, uint64_t cap = 0) const;
  bool operator==(const DiskAmount&) const = default;
};

// The settings. A default-constructed Config holds every key's default, taken from the table
// (config_keys()), which also says what each field means and which values it takes.
struct Config {
  Config();
  bool operator==(const Config&) const = default;

  std::string store; // store root
  std::string user;  // the handler drops to this user (never root)
  int compression_level = 0;
  int compression_threads = 0;
  uint64_t max_core_size = 0;
  bool honour_rlimit_core = false; // the crasher's RLIMIT_CORE (%c) below a page means no core
  bool python_stacks = true;       // a crashed CPython's Python stacks read during the stream
  DiskAmount keep_free;
  DiskAmount max_use;
  unsigned rate_limit_burst = 0;
  unsigned rate_limit_interval = 0;
  unsigned max_captures = 0;
  unsigned max_captures_per_user = 0;
  std::string runtime_dir;
  unsigned capture_timeout = 0;
  unsigned analysis_timeout = 0;
  uint64_t analysis_memory_limit = 0;
  unsigned max_executables_per_host = 0;
  unsigned max_hosts = 0;
  unsigned max_series = 0;
  std::string listen; // exporter address
  std::string kernel_log;
  uint64_t max_records = 0;
  uint64_t max_record_age = 0;
  uint64_t new_group_window = 0; // corectl groups: a group first seen this recently is "new"
  // process-core-uploader (uploader/): where, how, and what goes up.
  std::string upload_url;
  std::string upload_endpoint;
  std::string upload_region;
  std::string upload_addressing;
  std::string upload_credentials;
  std::string upload_ca_file;
  std::string upload_proxy;
  std::string upload_cores;
  bool upload_privileged_cores = false;
  std::string upload_node;
  std::string upload_state_dir;
  uint64_t upload_max_rate = 0;
  int upload_connections = 4;
};

// One key of the file. `kind` says how the value is read; numbers, sizes and durations must lie
// in [min, max]; text must pass `rule`. `default_value` is written as in the file, and the
// documented sample (packaging/process-core.conf) and process-core(8) show exactly it.
enum class ConfigKind {
  text,        // as written, checked by `rule`
  number,      // a decimal integer
  size,        // bytes with K/M/G/T (parse_size)
  duration,    // seconds, or a time span as systemd.time(7) spells it (parse_duration)
  disk_amount, // a size, or a percentage of the store's file system ("15%")
  boolean,     // yes or no (also true/false, on/off, 1/0)
};
enum class ConfigRule {
  none,
  absolute_path,          // starts with '/'
  absolute_path_or_empty, // starts with '/', or empty (= off)
  not_root,               // a user name or uid, never root: not empty, "root" or "0"
  address,                // HOST:PORT (the exporter checks it further when it binds)
};
using ConfigField = std::variant<std::string Config::*, int Config::*, unsigned Config::*,
                                 uint64_t Config::*, DiskAmount Config::*, bool Config::*>;
struct ConfigKey {
  std::string_view name;
  ConfigKind kind;
  ConfigField field;
  uint64_t min = 0;
  uint64_t max = 0;
  ConfigRule rule = ConfigRule::none;
  std::string_view default_value;
  std::string_view doc;
};
// Every key, in the order of the documented sample.
std::span<const ConfigKey> config_keys();
// Sets the key's field from `value` when the value is valid; false (and `config` unchanged)
// otherwise.
bool apply_config_value(const ConfigKey& key, std::string_view value, Config& config);

// Reads `key = value` lines ('#' comments) from `path`, then from the drop-ins of `path`.d
// (`*.conf`, in name order, at most 64; a later value of a key wins), where packages and tools
// put settings of their own without editing the administrator's file. Unknown keys and bad
// values are reported in `warnings` and leave the value before them in place; a missing file is
// not an error when `missing_ok` (the defaults apply). A file or drop-in directory owned by
// someone other than root (or the caller), or writable by group or others, is ignored with a
// warning; so is a drop-in that cannot be read.
struct ConfigResult {
  Config config;
  std::vector<std::string> warnings;
  std::string text; // what was read and used, the file and then each drop-in (SIGHUP compares it)
};
enum class MissingOk { no, yes };
Expected<ConfigResult> load_config(const std::string& path, MissingOk missing_ok);
// Parses configuration text over `base` (for drop-ins, tests and tools); `source` names it in
// the warnings ("50-listen.conf line 3").
ConfigResult parse_config(std::string_view text, Config base = {}, std::string_view source = {});

} // namespace common
