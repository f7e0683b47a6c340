#include "common/config/config.hpp"

#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/units.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
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

std::optional<bool> parse_boolean(std::string_view s) {
  if (s == "yes" || s == "true" || s == "on" || s == "1") {
    return true;
  }
  if (s == "no" || s == "false" || s == "off" || s == "0") {
    return false;
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
    // The kernel runs a pipe handler whatever the crasher's RLIMIT_CORE; like systemd-coredump,
    // a limit below a page is taken as "no core" unless the host decides centrally.
    ConfigKey{"honour_rlimit_core", K::boolean, &Config::honour_rlimit_core, 0, 0, R::none, "yes",
              "a crasher's RLIMIT_CORE (ulimit -c) of 0 means no core (no = store it anyway)"},
    ConfigKey{"python_stacks", K::boolean, &Config::python_stacks, 0, 0, R::none, "yes",
              "a crashed CPython's Python stacks are read during the stream (at most 200 ms)"},
    ConfigKey{"keep_free", K::disk_amount, &Config::keep_free, 0, 0, R::none, "15%",
              "free space never taken below this (percentages capped at 4 GiB)"},
    ConfigKey{"max_use", K::disk_amount, &Config::max_use, 0, 0, R::none, "10%",
              "the store's total size cap, cores and records (percentages capped at 4 GiB)"},
    ConfigKey{"max_records", K::number, &Config::max_records, 0, k_any, R::none, "10000",
              "records kept, the newest, store-wide (0 = no limit)"},
    ConfigKey{"max_record_age", K::duration, &Config::max_record_age, 0, k_any, R::none, "0",
              "records older than this are retired (0 = no limit)"},
    ConfigKey{"new_group_window", K::duration, &Config::new_group_window, 1, k_any, R::none, "1d",
              "a crash group first seen within this span is new (corectl groups)"},
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
    // process-core-uploader. Values the table cannot check (s3:// URLs, the cores policy) are
    // checked by the uploader when it starts, which then refuses to run.
    ConfigKey{"upload_url", K::text, &Config::upload_url, 0, 0, R::none, "",
              "uploader: s3://BUCKET/PREFIX records and cores go to (empty = off)"},
    ConfigKey{"upload_endpoint", K::text, &Config::upload_endpoint, 0, 0, R::none, "",
              "uploader: the S3 endpoint URL (empty = AWS in upload_region)"},
    ConfigKey{"upload_region", K::text, &Config::upload_region, 0, 0, R::none, "us-east-1",
              "uploader: the region requests are signed for"},
    ConfigKey{"upload_addressing", K::text, &Config::upload_addressing, 0, 0, R::none, "path",
              "uploader: path (ENDPOINT/BUCKET/KEY) or virtual (BUCKET.ENDPOINT/KEY)"},
    ConfigKey{"upload_credentials", K::text, &Config::upload_credentials, 0, 0,
              R::absolute_path_or_empty, "/etc/process-core/s3-credentials",
              "uploader: AWS shared credentials file, readable by the uploader alone"},
    ConfigKey{"upload_ca_file", K::text, &Config::upload_ca_file, 0, 0, R::absolute_path_or_empty,
              "", "uploader: CA certificates for the endpoint (empty = the system's)"},
    ConfigKey{"upload_proxy", K::text, &Config::upload_proxy, 0, 0, R::none, "",
              "uploader: HTTP(S) proxy URL (empty = none)"},
    ConfigKey{"upload_cores", K::text, &Config::upload_cores, 0, 0, R::none, "always",
              "uploader: always, never or first:N cores per signature (records always)"},
    ConfigKey{"upload_privileged_cores", K::boolean, &Config::upload_privileged_cores, 0, 0,
              R::none, "no", "uploader: also upload cores of privilege-changed processes"},
    ConfigKey{"upload_node", K::text, &Config::upload_node, 0, 0, R::none, "",
              "uploader: the node's name in keys (empty = this machine's own name)"},
    ConfigKey{"upload_state_dir", K::text, &Config::upload_state_dir, 0, 0, R::absolute_path,
              "/var/lib/process-core-uploader", "uploader: its upload state, outside the store"},
    ConfigKey{"upload_max_rate", K::size, &Config::upload_max_rate, 0, k_any, R::none, "0",
              "uploader: bytes per second sent (0 = no limit)"},
    ConfigKey{"upload_connections", K::number, &Config::upload_connections, 1, 16, R::none, "4",
              "uploader: parts of a large core sent at once, a connection each (memory: 8 MiB each)"},
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
  case ConfigKind::boolean:
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
  if (key.kind == ConfigKind::boolean) {
    auto* field = std::get_if<bool Config::*>(&key.field);
    const auto v = parse_boolean(value);
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

ConfigResult parse_config(std::string_view text, Config base, std::string_view source) {
  ConfigResult out;
  out.config = std::move(base);
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
    const std::string where =
        (source.empty() ? "" : std::string(source) + " ") + "line " + std::to_string(line_no);
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

namespace {

// At most this many drop-ins are read, each at most k_config_file_max bytes.
constexpr size_t k_max_dropins = 64;
constexpr size_t k_config_file_max = 1 << 20;

// The handler runs as root with these files' `store` and `user`: a file or directory someone
// else could have written is not trusted. Empty when `st` may be trusted, else why not.
std::string distrust(const struct stat& st) {
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return "owned by uid " + std::to_string(st.st_uid) + ", not root";
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return "writable by group or others";
  }
  return {};
}

// A drop-in's name: what packages and administrators write ("50-listen.conf"), nothing hidden
// and nothing an editor leaves behind ("x.conf~", ".x.conf.swp").
bool dropin_name(std::string_view name) {
  if (name.size() <= 5 || name.size() > 255 || !name.ends_with(".conf") || name[0] == '.') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// The text of one file, opened from `dirfd` (a link to it is fine: what matters is checked on
// the file itself), or why it cannot be read; nullopt (with a warning) when it is not trusted.
Expected<std::optional<std::string>> read_config_file(int dirfd, const std::string& name,
                                                      const std::string& shown,
                                                      std::vector<std::string>& warnings) {
  auto fd = open_at(dirfd, name, O_RDONLY | O_NOCTTY | O_NONBLOCK);
  if (!fd) {
    return std::unexpected(
        Error{"Failed to read config " + quoted(shown) + ": " + fd.error().message,
              fd.error().sys_errno});
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return fail_errno("Failed to stat config " + quoted(shown), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail("Failed to read config " + quoted(shown) + ": not a regular file");
  }
  if (const std::string why = distrust(st); !why.empty()) {
    warnings.push_back("ignoring " + quoted(shown) + " (" + why + ")");
    return std::nullopt;
  }
  auto text = read_fd(fd->get(), shown, k_config_file_max);
  if (!text) {
    return fail("Failed to read config " + quoted(shown) + ": " + text.error().message);
  }
  return std::optional<std::string>(std::move(*text));
}

// The drop-ins of `dir` (PATH.d), in name order, over `out`. A drop-in that cannot be read is
// skipped with a warning: one bad file costs its own keys, never the configuration.
void apply_dropins(const std::string& dir, ConfigResult& out) {
  auto dfd = open_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_NOCTTY);
  if (!dfd) {
    if (dfd.error().sys_errno != ENOENT) {
      out.warnings.push_back("ignoring " + quoted(dir) + ": " + dfd.error().message);
    }
    return;
  }
  struct stat st {};
  if (::fstat(dfd->get(), &st) != 0) {
    out.warnings.push_back("ignoring " + quoted(dir) + ": " + std::strerror(errno));
    return;
  }
  if (const std::string why = distrust(st); !why.empty()) {
    out.warnings.push_back("ignoring " + quoted(dir) + " (" + why + ")");
    return;
  }
  std::vector<std::string> names;
  size_t skipped = 0;
  auto listed = list_dir(dfd->get(), [&](std::string_view name) {
    if (!dropin_name(name)) {
      return;
    }
    if (names.size() < k_max_dropins) {
      names.emplace_back(name);
    } else {
      ++skipped;
    }
  });
  if (!listed) {
    out.warnings.push_back("ignoring " + quoted(dir) + ": " + listed.error().message);
    return;
  }
  std::sort(names.begin(), names.end());
  if (skipped != 0) {
    out.warnings.push_back("ignoring " + std::to_string(skipped) + " drop-in(s) of " + quoted(dir) +
                           " past the first " + std::to_string(k_max_dropins));
  }
  for (const auto& name : names) {
    const std::string shown = dir + "/" + name;
    auto text = read_config_file(dfd->get(), name, shown, out.warnings);
    if (!text) {
      out.warnings.push_back(text.error().message + "; skipped");
      continue;
    }
    if (!*text) {
      continue;
    }
    ConfigResult more = parse_config(**text, std::move(out.config), name);
    out.config = std::move(more.config);
    out.warnings.insert(out.warnings.end(), more.warnings.begin(), more.warnings.end());
    out.text += "\n# " + shown + "\n" + **text;
  }
}

} // namespace

Expected<ConfigResult> load_config(const std::string& path, MissingOk missing_ok) {
  std::vector<std::string> warnings;
  auto text = read_config_file(AT_FDCWD, path, path, warnings);
  ConfigResult out;
  if (!text) {
    if (text.error().sys_errno != ENOENT || missing_ok == MissingOk::no) {
      return std::unexpected(text.error());
    }
  } else if (!*text) {
    // Not trusted: the defaults are safe, and so are the drop-ins of its directory only if
    // they are trusted themselves.
    warnings.back() += "; using the defaults";
  } else {
    out = parse_config(**text);
    out.text = std::move(**text);
  }
  out.warnings.insert(out.warnings.begin(), warnings.begin(), warnings.end());
  apply_dropins(path + ".d", out);
  return out;
}

} // namespace common
