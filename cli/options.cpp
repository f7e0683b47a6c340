#include "cli/options.hpp"

#include <charconv>

namespace cli {

const char* const k_usage =
    "Usage: corectl [OPTIONS] VERB [ARGS]\n"
    "Browse, extract and debug the crashes process-core captured.\n"
    "\n"
    "Verbs:\n"
    "  list                 crashes, one per line, newest last\n"
    "  info ID...           everything a record says\n"
    "  dump ID [-o FILE]    the original core (decompressed, checksum verified)\n"
    "  debug ID [--debugger CMD]\n"
    "                       run a debugger (gdb) on the executable and the core\n"
    "  groups               crashes grouped by signature\n"
    "  vacuum [--dry-run]   apply the retention policy now\n"
    "  install              point kernel.core_pattern at the handler (root)\n"
    "  uninstall            restore the previous kernel settings (root)\n"
    "IDs may be abbreviated to any unique prefix.\n"
    "\n"
    "Options:\n"
    "  --store DIR          store root (default: from the configuration)\n"
    "  --config FILE        configuration (default /etc/process-core/process-core.conf)\n"
    "  --json               JSON output, one object per line (list, info, groups)\n"
    "  --color=WHEN         auto (default: only on a terminal), always, never\n"
    "  --host NAME          only crashes of this hostname (repeatable)\n"
    "  --exe PATH|NAME      only this executable, by full path or basename (repeatable)\n"
    "  --signal SIG         only this signal, by name or number (repeatable)\n"
    "  -S, --since WHEN     only crashes at or after WHEN: 2h, 3d, 1w, today, 2026-11-22,\n"
    "                       '2026-11-22 10:30' (local time) or 2026-11-22T10:30:00Z\n"
    "  -U, --until WHEN     only crashes at or before WHEN\n"
    "  -n, --limit N        only the newest N\n"
    "  -r, --reverse        newest first\n"
    "  -o, --output FILE    dump: write the core to FILE\n"
    "  --debugger CMD       debug: debugger command line (default gdb); the executable and\n"
    "                       the core are appended\n"
    "  --dry-run            vacuum: only say what would be removed\n"
    "  --handler PATH       install: the handler (default /usr/sbin/process-core)\n"
    "  --sysctl-dir DIR     install: where the drop-in goes (default /etc/sysctl.d)\n"
    "  --state-dir DIR      install: where previous settings are kept, a directory only\n"
    "                       root may write (default /etc/process-core)\n"
    "  -h, --help           this text\n"
    "  --version            the version\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error or ambiguous id, 3 no such record,\n"
    "4 permission denied, 5 store missing.\n";

namespace {

bool is_verb(std::string_view s) {
  for (const char* v :
       {"list", "info", "dump", "debug", "groups", "vacuum", "install", "uninstall"}) {
    if (s == v) {
      return true;
    }
  }
  return false;
}

} // namespace

std::expected<Options, std::string> parse_options(const std::vector<std::string>& argv) {
  Options o;
  bool only_args = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    if (only_args || arg == "-" || !arg.starts_with('-')) {
      if (o.verb.empty()) {
        if (!is_verb(arg)) {
          return std::unexpected("unknown verb '" + arg + "' (see corectl --help)");
        }
        o.verb = arg;
      } else {
        o.args.push_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      only_args = true;
      continue;
    }
    // "--opt=value", "-nVALUE" and "--opt value" / "-n value" are all accepted.
    std::optional<std::string> inline_value;
    if (arg.starts_with("--")) {
      if (const size_t eq = arg.find('='); eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg.resize(eq);
      }
    } else if (arg.size() > 2) {
      inline_value = arg.substr(2);
      arg.resize(2);
    }
    auto value = [&]() -> std::expected<std::string, std::string> {
      if (inline_value) {
        return *inline_value;
      }
      if (i + 1 >= argv.size()) {
        return std::unexpected("option " + arg + " needs a value");
      }
      return argv[++i];
    };
    auto flag = [&](bool& field) -> std::expected<void, std::string> {
      if (inline_value) {
        return std::unexpected("option " + arg + " takes no value");
      }
      field = true;
      return {};
    };
    std::expected<void, std::string> ok;
    auto set = [&](auto& field) {
      auto v = value();
      if (!v) {
        ok = std::unexpected(v.error());
      } else {
        field = *v;
      }
    };
    auto add = [&](std::vector<std::string>& field) {
      auto v = value();
      if (!v) {
        ok = std::unexpected(v.error());
      } else {
        field.push_back(*v);
      }
    };
    if (arg == "--store") {
      set(o.store);
    } else if (arg == "--config") {
      set(o.config);
    } else if (arg == "--json") {
      ok = flag(o.json);
    } else if (arg == "--color" || arg == "--colour") {
      std::string when;
      set(when);
      if (when == "auto") {
        o.colour = Colour::auto_;
      } else if (when == "always") {
        o.colour = Colour::always;
      } else if (when == "never") {
        o.colour = Colour::never;
      } else if (ok) {
        ok = std::unexpected("--color takes auto, always or never");
      }
    } else if (arg == "--host") {
      add(o.hosts);
    } else if (arg == "--exe") {
      add(o.exes);
    } else if (arg == "--signal") {
      add(o.signals);
    } else if (arg == "-S" || arg == "--since") {
      set(o.since);
    } else if (arg == "-U" || arg == "--until") {
      set(o.until);
    } else if (arg == "-n" || arg == "--limit") {
      std::string text;
      set(text);
      size_t n = 0;
      const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ok && (text.empty() || ec != std::errc() || p != text.data() + text.size())) {
        ok = std::unexpected("--limit takes a number, not '" + text + "'");
      }
      o.limit = n;
    } else if (arg == "-r" || arg == "--reverse") {
      ok = flag(o.reverse);
    } else if (arg == "-o" || arg == "--output") {
      set(o.output);
    } else if (arg == "--debugger") {
      set(o.debugger);
    } else if (arg == "--dry-run") {
      ok = flag(o.dry_run);
    } else if (arg == "--handler") {
      set(o.handler);
    } else if (arg == "--sysctl-dir") {
      set(o.sysctl_dir);
    } else if (arg == "--state-dir") {
      set(o.state_dir);
    } else if (arg == "--proc-sys") {
      set(o.proc_sys);
    } else if (arg == "--kernel-release") {
      set(o.kernel_release);
    } else if (arg == "-h" || arg == "--help") {
      ok = flag(o.help);
    } else if (arg == "--version") {
      ok = flag(o.version);
    } else {
      return std::unexpected("unknown option '" + argv[i] + "' (see corectl --help)");
    }
    if (!ok) {
      return std::unexpected(ok.error());
    }
  }
  if (o.verb.empty() && !o.help && !o.version) {
    o.verb = "list"; // like coredumpctl: no verb lists
  }
  return o;
}

} // namespace cli
