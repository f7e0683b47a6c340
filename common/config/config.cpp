#include "common/config/config.hpp"

#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/units.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <limits>
#include <optional>

namespace common {

namespace {

std::optional<DiskAmount> parse_disk_amount(std::string_view s) {
  if (s.ends_with('%')) {
    const auto pct = parse_number<double>(s.substr(0, s.size() - 1));
    if (!pct || *pct < 0 || *pct > 100) {
      return std::nullopt;
    }
    return DiskAmount{0, *pct};
  }
  if (auto b = parse_size(s)) {
    return DiskAmount{*b, 0};
  }
  return std::nullopt;
}

constexpr uint64_t k_any = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k_day = 86400;

using K = ConfigKind;
using R = ConfigRule;

// The schema. A row per key: name, kind, field, bounds (numbers, sizes, durations), the rule for
// text, the default as written in the file, and what the key does. The parser, Config's
// defaults, and the check of the documented sample and man page all read this table.
constexpr std::array k_config_keys{
    ConfigKey{"store", K::text, &Config::store, 0, 0, R::absolute_path, "/var/lib/process-core",
              "store root: <store>/<host>/<executable>/<id>.{core.zst,json}"},
    // The handler parses hostile cores as this user: never root, and never "stay root".
    ConfigKey{"user", K::text, &Config::user, 0, 0, R::not_root, "process-core",
              "the unprivileged user the handler becomes; it owns the store"},
    ConfigKey{"compression_level", K::number, &Config::compression_level, 1, 19, R::none, "1",
              "zstd compression level of stored cores"},
    ConfigKey{"compression_threads", K::number, &Config::compression_threads, 0, 16, R::none, "1",
              "zstd worker threads (0 = compress in the reading thread)"},
    ConfigKey{"max_core_size", K::size, &Config::max_core_size, 0, k_any, R::none, "16G",
              "cores are cut here and marked truncated"},
    ConfigKey{"keep_free", K::disk_amount, &Config::keep_free, 0, 0, R::none, "15%",
              "free space never taken below this (percentages capped at 4 GiB)"},
    ConfigKey{"max_use", K::disk_amount, &Config::max_use, 0, 0, R::none, "10%",
              "the store's total size cap, cores and records (percentages capped at 4 GiB)"},
    ConfigKey{"max_records", K::number, &Config::max_records, 0, k_any, R::none, "10000",
              "records kept, the newest, store-wide (0 = no limit)"},
    ConfigKey{"max_record_age", K::duration, &Config::max_record_age, 0, k_any, R::none, "0",
              "records older than this are retired (0 = no limit)"},
    ConfigKey{"rate_limit_burst", K::number, &Config::rate_limit_burst, 0, 1000000, R::none, "10",
              "cores per uid and executable per interval (0 = no limit)"},
    ConfigKey{"rate_limit_interval", K::number, &Config::rate_limit_interval, 0, 366 * k_day,
              R::none, "3600", "the rate limit's interval in seconds"},
    // Admission control: full captures (stream + compress) at once; later crashes take the lean
    // path (record without core, reason "busy"). Slots are lock files under runtime_dir.
    ConfigKey{"max_captures", K::number, &Config::max_captures, 1, 4096, R::none, "8",
              "full captures at once; later crashes take the lean path (reason busy)"},
    // One user's stalled dumps leave the rest of the slots free.
    ConfigKey{"max_captures_per_user", K::number, &Config::max_captures_per_user, 1, 4096, R::none,
              "4", "full captures at once for one uid"},
    ConfigKey{"runtime_dir", K::text, &Config::runtime_dir, 0, 0, R::absolute_path,
              "/run/process-core", "root-only directory of capture slots and rate-limit locks"},
    // At least a second each, at most a day: a handler must always end.
    ConfigKey{"capture_timeout", K::duration, &Config::capture_timeout, 1, k_day, R::none, "300",
              "seconds of reading the core before it is cut"},
    ConfigKey{"analysis_timeout", K::duration, &Config::analysis_timeout, 1, k_day, R::none, "30",
              "seconds for everything after the core is read, the record included"},
    // Below a MiB the child could not even start; past 64 GiB it would bound nothing.
    ConfigKey{"analysis_memory_limit", K::size, &Config::analysis_memory_limit, 1ULL << 20,
              64ULL << 30, R::none, "512M",
              "memory the analysis child may map beyond what it inherits"},
    ConfigKey{"listen", K::text, &Config::listen, 0, 0, R::address, "127.0.0.1:19464",
              "the exporter's address (HOST:PORT)"},
    ConfigKey{"max_executables_per_host", K::number, &Config::max_executables_per_host, 0, 1000000,
              R::none, "200", "exporter: executables per host with series of their own"},
    ConfigKey{"kernel_log", K::text, &Config::kernel_log, 0, 0, R::absolute_path_or_empty,
              "/dev/kmsg", "exporter: the kernel log followed to count lost dumps (empty = off)"},
    ConfigKey{"max_hosts", K::number, &Config::max_hosts, 0, 1000000, R::none, "500",
              "exporter: hostnames with series of their own (0 = no cap)"},
    ConfigKey{"max_series", K::number, &Config::max_series, 0, 1000000, R::none, "50000",
              "exporter: exported series in all (0 = no cap)"},
};

bool text_allowed(ConfigRule rule, std::string_view v) {
  switch (rule) {
  case ConfigRule::none:
    return true;
  case ConfigRule::absolute_path:
    return v.starts_with('/');
  case ConfigRule::absolute_path_or_empty:
    return v.empty() || v.starts_with('/');
  case ConfigRule::not_root:
    return !v.empty() && v != "root" && v != "0";
  case ConfigRule::address:
    return v.find(':') != std::string_view::npos;
  }
  return false;
}

// The value as a number in the key's bounds, for the kinds that are numbers.
std::optional<uint64_t> bounded_number(const ConfigKey& key, std::string_view v) {
  std::optional<uint64_t> n;
  switch (key.kind) {
  case ConfigKind::number:
    n = parse_number<uint64_t>(v);
    break;
  case ConfigKind::size:
    n = parse_size(v);
    break;
  case ConfigKind::duration:
    n = parse_duration(v);
    break;
  case ConfigKind::text:
  case ConfigKind::disk_amount:
    return std::nullopt;
  }
  if (!n || *n < key.min || *n > key.max) {
    return std::nullopt;
  }
  return n;
}

template <typename T>
bool store_number(T Config::*field, uint64_t n, Config& config) {
  // The bounds in the table keep every value inside its field; checked anyway.
  if (n > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
    return false;
  }
  config.*field = static_cast<T>(n);
  return true;
}

} // namespace

std::span<const ConfigKey> config_keys() {
  return k_config_keys;
}

bool apply_config_value(const ConfigKey& key, std::string_view value, Config& config) {
  if (key.kind == ConfigKind::text) {
    auto* field = std::get_if<std::string Config::*>(&key.field);
    if (field == nullptr || !text_allowed(key.rule, value)) {
      return false;
    }
    config.** field = std::string(value);
    return true;
  }
  if (key.kind == ConfigKind::disk_amount) {
    auto* field = std::get_if<DiskAmount Config::*>(&key.field);
    const auto v = parse_disk_amount(value);
    if (field == nullptr || !v) {
      return false;
    }
    config.** field = *v;
    return true;
  }
  const auto n = bounded_number(key, value);
  if (!n) {
    return false;
  }
  if (auto* f = std::get_if<int Config::*>(&key.field)) {
    return store_number(*f, *n, config);
  }
  if (auto* f = std::get_if<unsigned Config::*>(&key.field)) {
    return store_number(*f, *n, config);
  }
  if (auto* f = std::get_if<uint64_t Config::*>(&key.field)) {
    return store_number(*f, *n, config);
  }
  return false;
}

Config::Config() {
  // Every default parses (a unit test checks it); a row whose default did not would leave its
  // field zero or empty, which every reader already treats as a value to check.
  for (const ConfigKey& key : k_config_keys) {
    apply_config_value(key, key.default_value, *this);
  }
}

uint64_t DiskAmount::resolve(uint64_t fs_size, uint64_t cap) const {
  if (percent <= 0) {
    return bytes;
  }
  const auto v = static_cast<uint64_t>(static_cast<double>(fs_size) * percent / 100.0);
  return cap != 0 ? std::min(v, cap) : v;
}

ConfigResult parse_config(std::string_view text) {
  ConfigResult out;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = trim_blanks(line);
    if (line.empty()) {
      continue;
    }
    const size_t eq = line.find('=');
    const std::string where = "line " + std::to_string(line_no);
    if (eq == std::string_view::npos) {
      out.warnings.push_back(where + ": expected 'key = value'");
      continue;
    }
    const std::string key(trim_blanks(line.substr(0, eq)));
    const std::string value(trim_blanks(line.substr(eq + 1)));
    const ConfigKey* row = nullptr;
    for (const ConfigKey& k : k_config_keys) {
      if (k.name == key) {
        row = &k;
        break;
      }
    }
    if (row == nullptr) {
      out.warnings.push_back(where + ": unknown key '" + key + "'");
      continue;
    }
    if (!apply_config_value(*row, value, out.config)) {
      out.warnings.push_back(where + ": invalid value '" + value + "' for '" + key +
                             "', keeping the default");
    }
  }
  return out;
}

Expected<ConfigResult> load_config(const std::string& path, MissingOk missing_ok) {
  // Not read_file(): a link to the configuration (/etc managed by a tool) is fine, because what
  // matters is checked on the file itself below.
  auto fd = open_at(AT_FDCWD, path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
  if (!fd) {
    if (fd.error().sys_errno == ENOENT && missing_ok == MissingOk::yes) {
      return ConfigResult{};
    }
    return fail("Failed to read config " + quoted(path) + ": " + fd.error().message);
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return fail_errno("Failed to stat config " + quoted(path), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail("Failed to read config " + quoted(path) + ": not a regular file");
  }
  // The handler runs as root with this file's `store` and `user`: a file someone else could
  // have written is ignored (the defaults are safe), said once in the warnings.
  std::string distrust;
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    distrust = "owned by uid " + std::to_string(st.st_uid) + ", not root";
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    distrust = "writable by group or others";
  }
  if (!distrust.empty()) {
    ConfigResult defaults;
    defaults.warnings.push_back("ignoring " + quoted(path) + " (" + distrust +
                                "); using the defaults");
    return defaults;
  }
  auto text = read_fd(fd->get(), path, 1 << 20);
  if (!text) {
    return fail("Failed to read config " + quoted(path) + ": " + text.error().message);
  }
  return parse_config(*text);
}

} // namespace common
