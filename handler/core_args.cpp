#include "handler/core_args.hpp"

#include "common/base/parse.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

namespace common {

namespace {

bool is_signal_number(const std::string& s) {
  const auto v = parse_number<int>(s);
  return v && *v > 0 && *v <= 64;
}

// Applies one short option `-X<value>`; returns false when `arg` is no option we know.
bool apply_short(CoreArgs& out, const std::string& arg) {
  if (arg.size() < 2 || arg[0] != '-' || arg[1] == '-') {
    return false;
  }
  const char key = arg[1];
  const std::string_view value = std::string_view(arg).substr(2);
  auto number = [&](auto& field, const char* what) {
    using T = typename std::remove_reference_t<decltype(field)>::value_type;
    if (auto v = parse_number<T>(value)) {
      field = *v;
    } else {
      out.warnings.push_back(std::string("malformed ") + what + " '" + std::string(value) + "'");
    }
  };
  switch (key) {
  case 'P':
    number(out.pid, "pid (-P)");
    break;
  case 'p':
    number(out.pid_ns, "namespace pid (-p)");
    break;
  case 'I':
    number(out.tid, "tid (-I)");
    break;
  case 'i':
    break; // the tid in the crasher's namespace adds nothing to -I
  case 'u':
    number(out.uid, "uid (-u)");
    break;
  case 'g':
    number(out.gid, "gid (-g)");
    break;
  case 't':
    number(out.time, "time (-t)");
    break;
  case 'c':
    number(out.rlimit, "core limit (-c)");
    break;
  case 'd':
    number(out.dump_mode, "dump mode (-d)");
    break;
  case 'F':
    if (value.empty()) {
      // The pattern has -F%F, and a kernel before 6.16 expands an unknown %F to nothing.
      out.warnings.push_back("no pidfd: this kernel does not expand %F (Linux 6.16 and later)");
    } else {
      number(out.pidfd, "pidfd (-F)");
    }
    break;
  case 'e':
    out.comm = std::string(value);
    break;
  case 'C':
    break; // CPU number: accepted, not recorded
  default:
    return false;
  }
  return true;
}

struct Interpretation {
  CoreArgs args;
  size_t first_positional = 0;
};

// Every way of reading leading options: candidate k has consumed the first k options (the last
// one stops at "--" or at the first argument that is not one of ours). The caller picks one.
std::vector<Interpretation> read_options(const std::vector<std::string>& args) {
  std::vector<Interpretation> out{{CoreArgs{}, 0}};
  auto separator_after = [&](size_t pos) {
    for (size_t k = pos + 1; k < args.size(); ++k) {
      if (args[k] == "--") {
        return true;
      }
    }
    return false;
  };
  CoreArgs cur;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      out.push_back({cur, i + 1});
      return out;
    }
    auto long_value = [&](std::string_view name) -> std::optional<std::string> {
      if (a == name && i + 1 < args.size()) {
        return args[++i];
      }
      if (a.starts_with(name) && a.size() > name.size() && a[name.size()] == '=') {
        return a.substr(name.size() + 1);
      }
      return std::nullopt;
    };
    if (auto v = long_value("--config")) {
      cur.config_path = *v;
    } else if (auto st = long_value("--store")) {
      cur.store_path = *st;
    } else if (!apply_short(cur, a)) {
      // Before a later "--" anything is meant as an option: an unknown one (or an empty
      // argument, which is what the kernel makes of an unknown %X) is noted and skipped.
      if (!separator_after(i)) {
        break;
      }
      cur.warnings.push_back("unknown argument '" + a + "'");
    }
    out.push_back({cur, i + 1});
  }
  return out;
}

void apply_positional(CoreArgs& out, const std::vector<std::string>& pos) {
  if (pos.empty()) {
    out.warnings.push_back("no hostname, signal or executable arguments");
    return;
  }
  out.hostname = pos[0];
  if (pos.size() < 2) {
    out.warnings.push_back("no signal argument");
  } else if (is_signal_number(pos[1])) {
    out.signal = *parse_number<int>(pos[1]);
  } else {
    out.warnings.push_back("malformed signal '" + pos[1] + "'");
  }
  if (pos.size() < 3) {
    out.warnings.push_back("no executable argument");
    return;
  }
  // Before Linux 5.3 the kernel split the expanded pattern on spaces, so an executable path with
  // spaces arrives as several arguments: everything after the signal is %E.
  for (size_t k = 2; k < pos.size(); ++k) {
    if (k > 2) {
      out.exe_raw += ' ';
    }
    out.exe_raw += pos[k];
  }
}

} // namespace

CoreArgs parse_core_args(const std::vector<std::string>& args) {
  // For humans only, and only alone: a hostname "--help" must never end a capture.
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    CoreArgs help;
    help.help = true;
    return help;
  }
  if (args.size() == 1 && args[0] == "--version") {
    CoreArgs version;
    version.version = true;
    return version;
  }
  // %h is attacker-controlled and may look like any option ("--config=/x", "-P5", "--"). Take
  // the reading that consumes the most options and still leaves "HOST SIGNAL EXE...": the
  // argument after the hostname must be a signal number, and what follows the signal is %E,
  // which starts with '!' (an encoded absolute path), so a hostname consumed as an option can
  // never leave a plausible rest behind.
  const std::vector<Interpretation> candidates = read_options(args);
  const Interpretation* chosen = nullptr;
  for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {
    const size_t p = it->first_positional;
    if (p + 1 < args.size() && is_signal_number(args[p + 1])) {
      chosen = &*it;
      break;
    }
  }
  if (!chosen) {
    chosen = &candidates.back(); // nothing fits: report what is wrong with the fullest reading
  }
  CoreArgs out = chosen->args;
  apply_positional(
      out, std::vector<std::string>(
               args.begin() + static_cast<std::ptrdiff_t>(chosen->first_positional), args.end()));
  return out;
}

void keep_pattern_options(CoreArgs& args, std::string_view core_pattern) {
  // The pattern's own words: whitespace-separated, and only those no specifier expands into.
  std::vector<std::string_view> words;
  for (size_t i = 0; i < core_pattern.size();) {
    const size_t start = core_pattern.find_first_not_of(" \t\n", i);
    if (start == std::string_view::npos) {
      break;
    }
    size_t end = core_pattern.find_first_of(" \t\n", start);
    if (end == std::string_view::npos) {
      end = core_pattern.size();
    }
    words.push_back(core_pattern.substr(start, end - start));
    i = end;
  }
  // The values the pattern itself writes for `name`, in order: "--name=V", or "--name" then
  // "V", with no specifier in either word.
  auto written = [&](std::string_view name) {
    std::vector<std::string_view> values;
    for (size_t k = 0; k < words.size(); ++k) {
      if (words[k].find('%') != std::string_view::npos) {
        continue;
      }
      if (words[k].size() > name.size() && words[k].starts_with(name) &&
          words[k][name.size()] == '=') {
        values.push_back(words[k].substr(name.size() + 1));
      } else if (words[k] == name && k + 1 < words.size() &&
                 words[k + 1].find('%') == std::string_view::npos) {
        values.push_back(words[k + 1]);
      }
    }
    return values;
  };
  for (auto [name, field] : {std::pair{std::string_view("--config"), &args.config_path},
                             std::pair{std::string_view("--store"), &args.store_path}}) {
    if (!*field) {
      continue;
    }
    const std::vector<std::string_view> values = written(name);
    if (std::find(values.begin(), values.end(), **field) == values.end()) {
      args.warnings.push_back("ignored " + std::string(name) + " '" + **field +
                              "': not written in core_pattern (it came from crash data)");
      // Crash data that repeats an option must not erase the administrator's own value either.
      *field = values.empty() ? std::nullopt : std::optional<std::string>(values.back());
    }
  }
}

} // namespace common
