#include "cli/verbs/install.hpp"

#include "cli/exit.hpp"
#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/path.hpp"
#include "common/store/record.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
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

// The state file decides what uninstall (run as root) writes into the kernel, core_pattern
// included: whoever can write it can make root run any program on the next crash. So it lives in
// a root-only directory and is used only when both are root's and writable by root alone.
common::Expected<void> check_root_only(int fd, const std::string& path, bool want_dir) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return common::fail_errno("Failed to stat " + common::quoted(path), errno);
  }
  std::string why;
  if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
    why = want_dir ? "not a directory" : "not a regular file";
  } else if (st.st_uid != 0) {
    why = "owned by uid " + std::to_string(st.st_uid) + ", not root";
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    why = "writable by group or others";
  }
  if (!why.empty()) {
    return common::fail("Refusing to use " + common::quoted(path) + ": " + why +
                        " (it decides the kernel settings root writes; see corectl(1))");
  }
  return {};
}

// Opens the state directory, creating it root-only, and checks that only root can change it.
common::Expected<common::UniqueFd> open_state_dir(const std::string& path, bool create) {
  const bool made = create && ::mkdir(path.c_str(), 0755) == 0;
  if (create && !made && errno != EEXIST) {
    return common::fail_errno("Failed to create " + common::quoted(path), errno);
  }
  auto fd = common::open_at(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) {
    return std::unexpected(fd.error());
  }
  if (made) {
    ::fchmod(fd->get(), 0755); // whatever the umask: the check below wants no group write
  }
  if (auto ok = check_root_only(fd->get(), path, true); !ok) {
    return std::unexpected(ok.error());
  }
  return fd;
}

// Reads the state file in `dirfd`; ENOENT when there is none. O_NONBLOCK: a FIFO planted there
// must not hang uninstall (it is refused by the S_ISREG check below anyway).
common::Expected<json> read_state(int dirfd, const std::string& path) {
  auto fd = common::open_at(dirfd, k_state_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    return std::unexpected(fd.error());
  }
  if (auto ok = check_root_only(fd->get(), path, false); !ok) {
    return std::unexpected(ok.error());
  }
  auto text = common::read_fd(fd->get(), path, 1 << 20);
  if (!text) {
    return std::unexpected(text.error());
  }
  json state = json::parse(*text, nullptr, false);
  if (!state.is_object() || !state.contains("settings") || !state["settings"].is_object()) {
    return common::fail("Malformed " + common::quoted(path) + ", not touching the kernel settings");
  }
  return state;
}

// The kernel runs the handler as root for every crash: refuse one that someone other than root
// could replace, by writing the file or renaming it away in a directory on its path. A sticky
// directory (/tmp) protects root's entries from other users, so it passes. Checked only when we
// are root: an unprivileged run (tests on a fake /proc) cannot install for real anyway.
// Symbolic links on the way count by owner only (their mode is always 0777); their targets are
// checked through realpath().
common::Expected<void> check_handler_owner(const std::string& handler) {
  if (::geteuid() != 0) {
    return {};
  }
  if (char* real = ::realpath(handler.c_str(), nullptr); real != nullptr) {
    const std::string resolved = real;
    std::free(real);
    if (resolved != handler) {
      if (auto ok = check_handler_owner(resolved); !ok) {
        return ok;
      }
    }
  }
  std::string path = handler;
  for (bool file = true;; file = false) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      return common::fail_errno("Failed to stat " + common::quoted(path), errno);
    }
    const bool mode_ok = S_ISLNK(st.st_mode) || (!file && (st.st_mode & S_ISVTX) != 0) ||
                         (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
    if (st.st_uid != 0 || !mode_ok) {
      return common::fail("Refusing the handler " + common::quoted(handler) + ": " +
                          common::quoted(path) +
                          " is not owned by root or is writable by others, and the kernel runs "
                          "the handler as root");
    }
    if (path == "/") {
      return {};
    }
    path = std::string(common::dir_name(path));
  }
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
  // "6.16.0-1-amd64": the major number, a dot, and the digits of the minor number.
  const size_t dot = release.find('.');
  if (dot == std::string_view::npos) {
    return false;
  }
  const std::string_view rest = release.substr(dot + 1);
  const auto major = common::parse_number<unsigned>(release.substr(0, dot));
  const auto minor =
      common::parse_number<unsigned>(rest.substr(0, rest.find_first_not_of("0123456789")));
  if (!major || !minor) {
    return false;
  }
  return *major > 6 || (*major == 6 && *minor >= 16);
}

std::optional<uint64_t> soft_core_limit(std::string_view limits) {
  constexpr std::string_view k_name = "Max core file size";
  const size_t at = limits.find(k_name);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = limits.substr(at + k_name.size());
  rest = rest.substr(0, rest.find('\n'));
  const size_t start = rest.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    return std::nullopt;
  }
  rest = rest.substr(start);
  const std::string_view soft = rest.substr(0, rest.find(' '));
  if (soft == "unlimited") {
    return UINT64_MAX;
  }
  return common::parse_number<uint64_t>(soft);
}

std::string handler_pattern(std::string_view handler, bool with_pidfd) {
  return "|" + std::string(handler) + " -P%P -I%I -u%u -g%g -t%t -c%c -d%d" +
         (with_pidfd ? " -F%F" : "") + " -- %h %s %E";
}

bool is_our_pattern(std::string_view pattern, std::string_view handler,
                    std::string_view installed) {
  if (!installed.empty() && pattern == installed) {
    return true;
  }
  if (!pattern.starts_with('|')) {
    return false;
  }
  // The program is the first word; compare it whole, so /usr/sbin/process-core-evil is not ours.
  const std::string_view program = pattern.substr(1, pattern.find(' ') - 1);
  return program.starts_with('/') &&
         (program == handler || common::base_name(program) == "process-core");
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
      out +=
          "# 0: the kernel never skips a dump; the handler bounds its own work (max_captures).\n";
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
  if (auto ok = check_handler_owner(o.handler); !ok) {
    return report(Exit::failure, ok.error().message);
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

  // 3. Save what is there now, once: a second install must not save our own pattern. The
  // pattern we write is saved too, so uninstall can tell whether it is still in place.
  auto previous = current_settings(o);
  if (!previous) {
    return error_exit(previous.error());
  }
  auto state_dir = open_state_dir(o.state_dir, true);
  if (!state_dir) {
    return error_exit(state_dir.error());
  }
  const std::string state_path = o.state_dir + "/" + k_state_name;
  auto state = read_state(state_dir->get(), state_path);
  if (state) {
    std::printf("Keeping the settings saved by an earlier install in %s\n",
                common::quoted(state_path).c_str());
  } else if (state.error().sys_errno == ENOENT) {
    json saved = json::object();
    for (const auto& s : *previous) {
      // Our own pattern (this very handler, whose state was lost) is not worth restoring. The
      // pattern of another process-core installation (a package, while a build tree installs
      // its handler) is: uninstalling this one must give that one back.
      const bool ours = s.name == "kernel.core_pattern" &&
                        (s.value == "|" + o.handler || s.value.starts_with("|" + o.handler + " "));
      saved[s.name] = ours ? "core" : s.value;
    }
    state = json{{"saved", common::format_time(std::time(nullptr))}, {"settings", saved}};
  } else {
    return error_exit(state.error());
  }
  (*state)["installed"] = pattern;
  if (auto w = common::write_file_atomic(state_dir->get(), k_state_name, state->dump(2) + "\n",
                                         0600, common::Replace::yes);
      !w) {
    return error_exit(w.error());
  }

  // 4. Persist, then apply; on any failure put back every setting written and the drop-in as
  // it was (a failed re-install must not take away a working drop-in).
  auto sysctl_dir =
      common::open_or_make_dir(AT_FDCWD, o.sysctl_dir, 0755, common::FollowLinks::yes);
  if (!sysctl_dir) {
    return error_exit(sysctl_dir.error());
  }
  auto old_dropin = common::read_file(sysctl_dir->get(), k_dropin_name, 1 << 20);
  if (!old_dropin && old_dropin.error().sys_errno != ENOENT) {
    return error_exit(old_dropin.error());
  }
  size_t written = 0;
  auto roll_back = [&] {
    for (size_t k = 0; k < written; ++k) {
      (void)write_setting(o, (*previous)[k]);
    }
    if (old_dropin) {
      (void)common::write_file_atomic(sysctl_dir->get(), k_dropin_name, *old_dropin, 0644,
                                      common::Replace::yes);
    } else {
      ::unlinkat(sysctl_dir->get(), k_dropin_name, 0);
    }
  };
  if (auto w = common::write_file_atomic(sysctl_dir->get(), k_dropin_name, dropin_text(settings),
                                         0644, common::Replace::yes);
      !w) {
    return error_exit(w.error());
  }
  for (; written < settings.size(); ++written) {
    auto w = write_setting(o, settings[written]);
    if (!w) {
      roll_back();
      return error_exit(w.error());
    }
  }
  auto now = read_setting(o, "kernel.core_pattern");
  if (!now || *now != pattern) {
    roll_back();
    return report(Exit::failure, "The kernel did not take the core_pattern (read back " +
                                     common::quoted(now ? *now : now.error().message) +
                                     "); put the previous settings back");
  }
  std::printf("Wrote %s and applied:\n",
              common::quoted(o.sysctl_dir + "/" + k_dropin_name).c_str());
  for (size_t i = 0; i < settings.size(); ++i) {
    std::printf("  %s = %s   (was: %s)\n", settings[i].name.c_str(), settings[i].value.c_str(),
                (*previous)[i].value.c_str());
  }
  // The kernel runs the handler whatever the limit, but with honour_rlimit_core = yes (the
  // default) a process whose RLIMIT_CORE is 0 gets no core; most processes inherit PID 1's.
  const std::string proc = o.proc_sys.substr(0, o.proc_sys.rfind('/'));
  if (auto limits = common::read_file(AT_FDCWD, proc + "/1/limits", 1 << 16)) {
    if (const auto soft = soft_core_limit(*limits); soft && *soft < 4096) {
      std::printf("Warning: PID 1's soft RLIMIT_CORE is %llu, which most processes inherit: "
                  "their crashes get\na record but no core while honour_rlimit_core = yes (the "
                  "default). Raise it (systemd:\nDefaultLimitCORE=infinity) or set "
                  "honour_rlimit_core = no in the configuration.\n",
                  static_cast<unsigned long long>(*soft));
    }
  }
  return Exit::ok;
}

Exit uninstall(const InstallOptions& o) {
  const std::string state_path = o.state_dir + "/" + k_state_name;
  const std::string dropin_path = o.sysctl_dir + "/" + k_dropin_name;
  std::vector<Setting> restore;
  std::string installed; // the pattern install wrote, when it saved it
  auto state_dir = open_state_dir(o.state_dir, false);
  auto state = state_dir ? read_state(state_dir->get(), state_path)
                         : common::Expected<json>(std::unexpected(state_dir.error()));
  if (state) {
    if (auto it = state->find("installed"); it != state->end() && it->is_string()) {
      installed = it->get<std::string>();
    }
    for (const auto& s : install_settings("")) {
      if (auto it = (*state)["settings"].find(s.name);
          it != (*state)["settings"].end() && it->is_string()) {
        restore.push_back({s.name, it->get<std::string>()});
      }
    }
  } else if (state.error().sys_errno == ENOENT) {
    // Nothing saved (installed another way): take our pattern out, leave the rest as it is.
    restore.push_back({"kernel.core_pattern", "core"});
    std::printf("No saved settings in %s\n", common::quoted(state_path).c_str());
  } else {
    return error_exit(state.error());
  }
  // Someone (an administrator, another crash tool) may have set a pattern since install: that
  // one stays.
  auto now = read_setting(o, "kernel.core_pattern");
  if (!now || !is_our_pattern(*now, o.handler, installed)) {
    std::erase_if(restore, [](const Setting& s) { return s.name == "kernel.core_pattern"; });
    std::printf("The core_pattern %s is not process-core's, leaving it\n",
                now ? common::quoted(*now).c_str() : "(unreadable)");
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
  if (state_dir && ::unlinkat(state_dir->get(), k_state_name, 0) != 0 && errno != ENOENT) {
    return error_exit(
        common::Error::from_errno("Failed to remove " + common::quoted(state_path), errno));
  }
  return Exit::ok;
}

} // namespace cli
