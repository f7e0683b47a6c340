#include "cli/install.hpp"

#include "cli/corectl.hpp"
#include "common/atomic_file.hpp"
#include "common/io.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <ctime>

namespace cli {

namespace {

using nlohmann::json;

std::string proc_path(const InstallOptions& o, std::string_view name) {
  std::string rel(name);
  for (auto& ch : rel) {
    ch = ch == '.' ? '/' : ch;
  }
  return o.proc_sys + "/" + rel;
}

common::Expected<std::string> read_setting(const InstallOptions& o, std::string_view name) {
  auto text = common::read_file(AT_FDCWD, proc_path(o, name), 4096);
  if (!text) {
    return std::unexpected(text.error());
  }
  while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) {
    text->pop_back();
  }
  return *text;
}

// Writes a value to /proc/sys directly: the sysctl binary may be absent (minimal images).
common::Expected<void> write_setting(const InstallOptions& o, const Setting& s) {
  const std::string path = proc_path(o, s.name);
  auto fd = common::open_at(AT_FDCWD, path, O_WRONLY | O_TRUNC);
  if (!fd) {
    return std::unexpected(fd.error());
  }
  if (auto w = common::write_all(fd->get(), s.value + "\n"); !w) {
    return common::fail_errno("Failed to write " + common::quoted(path), w.error().sys_errno);
  }
  return {};
}

common::Expected<common::UniqueFd> open_or_make_dir(const std::string& path, unsigned mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return common::fail_errno("Failed to create " + common::quoted(path), errno);
  }
  return common::open_at(AT_FDCWD, path, O_RDONLY | O_DIRECTORY);
}

Exit error_exit(const common::Error& e) {
  return report(e.sys_errno == EACCES || e.sys_errno == EPERM ? Exit::denied : Exit::failure,
                e.message +
                    (e.sys_errno == EACCES || e.sys_errno == EPERM ? " (run as root)" : ""));
}

// The settings install manages, as they are now.
common::Expected<std::vector<Setting>> current_settings(const InstallOptions& o) {
  std::vector<Setting> out;
  for (const auto& s : install_settings("")) {
    auto v = read_setting(o, s.name);
    if (!v) {
      return std::unexpected(v.error());
    }
    out.push_back({s.name, *v});
  }
  return out;
}

} // namespace

bool kernel_has_pidfd(std::string_view release) {
  unsigned major = 0;
  unsigned minor = 0;
  const char* p = release.data();
  const char* end = release.data() + release.size();
  auto r1 = std::from_chars(p, end, major);
  if (r1.ec != std::errc() || r1.ptr == end || *r1.ptr != '.') {
    return false;
  }
  auto r2 = std::from_chars(r1.ptr + 1, end, minor);
  if (r2.ec != std::errc()) {
    return false;
  }
  return major > 6 || (major == 6 && minor >= 16);
}

std::string handler_pattern(std::string_view handler, bool with_pidfd) {
  return "|" + std::string(handler) + " -P%P -I%I -u%u -g%g -t%t -c%c -d%d" +
         (with_pidfd ? " -F%F" : "") + " -- %h %s %E";
}

std::vector<Setting> install_settings(std::string_view pattern) {
  return {
      {"kernel.core_pattern", std::string(pattern)},
      {"kernel.core_pipe_limit", std::to_string(k_core_pipe_limit)},
      // Dump privilege-changing (setuid) processes too, as root: the handler marks those cores
      // root-only (%d == 2, AT_SECURE), so crashes of such programs are no longer invisible.
      {"fs.suid_dumpable", "2"},
  };
}

std::string dropin_text(const std::vector<Setting>& settings) {
  std::string out =
      "# Written by `corectl install`: every core dump goes to process-core.\n"
      "# `corectl uninstall` removes this file and restores the previous values.\n"
      "# %F (pidfd, Linux 6.16+) lets the handler read /proc without a pid-reuse race.\n";
  for (const auto& s : settings) {
    if (s.name == "kernel.core_pipe_limit") {
      out += "# Non-zero: the kernel keeps the crashed process until the handler has read /proc;\n"
             "# at most this many handlers at once (further dumps are skipped in a storm).\n";
    } else if (s.name == "fs.suid_dumpable") {
      out += "# Also dump setuid processes; process-core makes their cores root-only.\n";
    }
    out += s.name + " = " + s.value + "\n";
  }
  return out;
}

Exit install(const InstallOptions& o) {
  // 1. The handler: the kernel execs this path for every crash, split on spaces.
  struct stat st {};
  if (!o.handler.starts_with('/') || o.handler.find_first_of(" \t\n") != std::string::npos) {
    return report(Exit::usage, "The handler must be an absolute path without blanks, not " +
                                   common::quoted(o.handler));
  }
  if (::stat(o.handler.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      ::access(o.handler.c_str(), X_OK) != 0) {
    return report(Exit::failure, "The handler " + common::quoted(o.handler) +
                                     " is not an executable file (see --handler)");
  }

  // 2. The pattern for this kernel.
  std::string release;
  if (o.kernel_release) {
    release = *o.kernel_release;
  } else {
    struct utsname u {};
    ::uname(&u);
    release = u.release;
  }
  const bool pidfd = kernel_has_pidfd(release);
  const std::string pattern = handler_pattern(o.handler, pidfd);
  if (!pidfd) {
    std::printf("Kernel %s is older than 6.16 and has no %%F (pidfd): using the pattern "
                "without -F%%F.\nThe handler then reads /proc by pid, which is open to pid "
                "reuse; upgrade the kernel and re-run install to close it.\n",
                release.c_str());
  }
  if (pattern.size() > k_core_pattern_max) {
    return report(Exit::failure, "The core_pattern would be " + std::to_string(pattern.size()) +
                                     " characters and the kernel keeps only " +
                                     std::to_string(k_core_pattern_max) +
                                     ": install the handler under a shorter path");
  }
  const auto settings = install_settings(pattern);

  // 3. Save what is there now, once: a second install must not save our own pattern.
  auto previous = current_settings(o);
  if (!previous) {
    return error_exit(previous.error());
  }
  auto state_dir = open_or_make_dir(o.state_dir, 0750);
  if (!state_dir) {
    return error_exit(state_dir.error());
  }
  const std::string state_path = o.state_dir + "/" + k_state_name;
  if (::faccessat(state_dir->get(), k_state_name, F_OK, 0) == 0) {
    std::printf("Keeping the settings saved by an earlier install in %s\n",
                common::quoted(state_path).c_str());
  } else {
    json saved = json::object();
    for (const auto& s : *previous) {
      // Our own pattern (installed by hand or by a package) is not worth restoring.
      const bool ours = s.name == "kernel.core_pattern" && s.value.starts_with("|" + o.handler);
      saved[s.name] = ours ? "core" : s.value;
    }
    const json state = {{"saved", common::format_time(std::time(nullptr))}, {"settings", saved}};
    if (auto w = common::write_file_atomic(state_dir->get(), k_state_name, state.dump(2) + "\n",
                                           0600, common::Replace::yes);
        !w) {
      return error_exit(w.error());
    }
    std::printf("Saved the previous settings in %s\n", common::quoted(state_path).c_str());
  }

  // 4. Persist, then apply; on failure put back what was applied.
  auto sysctl_dir = open_or_make_dir(o.sysctl_dir, 0755);
  if (!sysctl_dir) {
    return error_exit(sysctl_dir.error());
  }
  if (auto w = common::write_file_atomic(sysctl_dir->get(), k_dropin_name, dropin_text(settings),
                                         0644, common::Replace::yes);
      !w) {
    return error_exit(w.error());
  }
  for (size_t i = 0; i < settings.size(); ++i) {
    auto w = write_setting(o, settings[i]);
    if (!w) {
      for (size_t k = 0; k < i; ++k) {
        (void)write_setting(o, (*previous)[k]);
      }
      ::unlinkat(sysctl_dir->get(), k_dropin_name, 0);
      return error_exit(w.error());
    }
  }
  auto now = read_setting(o, "kernel.core_pattern");
  if (!now || *now != pattern) {
    (void)write_setting(o, (*previous)[0]);
    return report(Exit::failure, "The kernel did not take the core_pattern (read back " +
                                     common::quoted(now ? *now : now.error().message) + ")");
  }
  std::printf("Wrote %s and applied:\n",
              common::quoted(o.sysctl_dir + "/" + k_dropin_name).c_str());
  for (size_t i = 0; i < settings.size(); ++i) {
    std::printf("  %s = %s   (was: %s)\n", settings[i].name.c_str(), settings[i].value.c_str(),
                (*previous)[i].value.c_str());
  }
  return Exit::ok;
}

Exit uninstall(const InstallOptions& o) {
  const std::string state_path = o.state_dir + "/" + k_state_name;
  const std::string dropin_path = o.sysctl_dir + "/" + k_dropin_name;
  std::vector<Setting> restore;
  auto text = common::read_file(AT_FDCWD, state_path, 1 << 20);
  if (text) {
    const json state = json::parse(*text, nullptr, false);
    if (!state.is_object() || !state.contains("settings") || !state["settings"].is_object()) {
      return report(Exit::failure, "Malformed " + common::quoted(state_path) +
                                       ", not touching "
                                       "the kernel settings");
    }
    for (const auto& s : install_settings("")) {
      if (auto it = state["settings"].find(s.name);
          it != state["settings"].end() && it->is_string()) {
        restore.push_back({s.name, it->get<std::string>()});
      }
    }
  } else if (text.error().sys_errno == ENOENT) {
    // Nothing saved (installed another way): take our pattern out, leave the rest as it is.
    auto now = read_setting(o, "kernel.core_pattern");
    if (now && now->starts_with("|" + o.handler)) {
      restore.push_back({"kernel.core_pattern", "core"});
    }
    std::printf("No saved settings in %s; %s\n", common::quoted(state_path).c_str(),
                restore.empty() ? "the core_pattern is not ours, leaving it"
                                : "resetting core_pattern to the kernel default 'core'");
  } else {
    return error_exit(text.error());
  }

  Exit result = Exit::ok;
  for (const auto& s : restore) {
    auto before = read_setting(o, s.name);
    if (auto w = write_setting(o, s); !w) {
      result = error_exit(w.error());
      continue;
    }
    std::printf("  %s = %s   (was: %s)\n", s.name.c_str(), s.value.c_str(),
                before ? before->c_str() : "?");
  }
  if (result != Exit::ok) {
    return result; // keep the drop-in and the saved values for another try
  }
  if (::unlink(dropin_path.c_str()) == 0) {
    std::printf("Removed %s\n", common::quoted(dropin_path).c_str());
  } else if (errno != ENOENT) {
    return error_exit(
        common::Error::from_errno("Failed to remove " + common::quoted(dropin_path), errno));
  }
  if (::unlink(state_path.c_str()) != 0 && errno != ENOENT) {
    return error_exit(
        common::Error::from_errno("Failed to remove " + common::quoted(state_path), errno));
  }
  return Exit::ok;
}

} // namespace cli
