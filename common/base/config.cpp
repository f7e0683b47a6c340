#include "common/base/config.hpp"

#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/units.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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

} // namespace

uint64_t DiskAmount::resolve(uint64_t fs_size, uint64_t cap) const {
  if (percent <= 0) {
    return bytes;
  }
  const auto v = static_cast<uint64_t>(static_cast<double>(fs_size) * percent / 100.0);
  return cap != 0 ? std::min(v, cap) : v;
}

ConfigResult parse_config(std::string_view text) {
  ConfigResult out;
  Config& c = out.config;
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
    bool ok = true;
    auto set_uint = [&](unsigned& field, unsigned max) {
      auto v = parse_number<unsigned>(value);
      ok = v && *v <= max;
      if (ok) {
        field = *v;
      }
    };
    if (key == "store") {
      ok = value.starts_with('/');
      if (ok) {
        c.store = value;
      }
    } else if (key == "user") {
      // The handler parses hostile cores as this user: never root, and never "stay root".
      ok = !value.empty() && value != "root" && value != "0";
      if (ok) {
        c.user = value;
      }
    } else if (key == "compression_level") {
      auto v = parse_number<int>(value);
      ok = v && *v >= 1 && *v <= 19;
      if (ok) {
        c.compression_level = *v;
      }
    } else if (key == "compression_threads") {
      auto v = parse_number<int>(value);
      ok = v && *v >= 0 && *v <= 16;
      if (ok) {
        c.compression_threads = *v;
      }
    } else if (key == "max_core_size") {
      auto v = parse_size(value);
      ok = v.has_value();
      if (ok) {
        c.max_core_size = *v;
      }
    } else if (key == "keep_free" || key == "max_use") {
      auto v = parse_disk_amount(value);
      ok = v.has_value();
      if (ok) {
        (key == "keep_free" ? c.keep_free : c.max_use) = *v;
      }
    } else if (key == "rate_limit_burst") {
      set_uint(c.rate_limit_burst, 1000000);
    } else if (key == "rate_limit_interval") {
      set_uint(c.rate_limit_interval, 86400 * 366);
    } else if (key == "max_captures") {
      set_uint(c.max_captures, 4096);
      ok = ok && c.max_captures > 0;
      if (!ok) {
        c.max_captures = Config{}.max_captures;
      }
    } else if (key == "max_captures_per_user") {
      set_uint(c.max_captures_per_user, 4096);
      ok = ok && c.max_captures_per_user > 0;
      if (!ok) {
        c.max_captures_per_user = Config{}.max_captures_per_user;
      }
    } else if (key == "runtime_dir") {
      ok = value.starts_with('/');
      if (ok) {
        c.runtime_dir = value;
      }
    } else if (key == "capture_timeout" || key == "analysis_timeout") {
      // At least a second each, at most a day: a handler must always end.
      auto v = parse_duration(value);
      ok = v && *v >= 1 && *v <= 86400;
      if (ok) {
        (key == "capture_timeout" ? c.capture_timeout : c.analysis_timeout) =
            static_cast<unsigned>(*v);
      }
    } else if (key == "analysis_memory_limit") {
      // Below a MiB the child could not even start; past 64 GiB it would bound nothing.
      auto v = parse_size(value);
      ok = v && *v >= (1ULL << 20) && *v <= (64ULL << 30);
      if (ok) {
        c.analysis_memory_limit = *v;
      }
    } else if (key == "max_executables_per_host") {
      set_uint(c.max_executables_per_host, 1000000);
    } else if (key == "max_hosts") {
      set_uint(c.max_hosts, 1000000);
    } else if (key == "max_series") {
      set_uint(c.max_series, 1000000);
    } else if (key == "max_records") {
      auto v = parse_number<uint64_t>(value);
      ok = v.has_value();
      if (ok) {
        c.max_records = *v;
      }
    } else if (key == "max_record_age") {
      auto v = parse_duration(value);
      ok = v.has_value();
      if (ok) {
        c.max_record_age = *v;
      }
    } else if (key == "kernel_log") {
      ok = value.empty() || value.starts_with('/');
      if (ok) {
        c.kernel_log = value;
      }
    } else if (key == "listen") {
      ok = value.find(':') != std::string::npos;
      if (ok) {
        c.listen = value;
      }
    } else {
      out.warnings.push_back(where + ": unknown key '" + key + "'");
      continue;
    }
    if (!ok) {
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
