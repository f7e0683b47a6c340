#include "cli/options.hpp"

#include "cli/verbs/verbs.hpp"
#include "common/base/escape.hpp"
#include "common/base/parse.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

namespace {

constexpr const char* k_footer =
    "Exit status: 0 success, 1 failure or nothing matched, 2 usage error or ambiguous id,\n"
    "3 no such record, 4 permission denied (--remote: credentials refused), 5 store (or\n"
    "bucket) missing. See corectl(1).";

constexpr const char* k_match_help =
    "ID (8 to 16 hex digits), PID (digits), /path/of/executable, NAME (comm or executable "
    "name), or FIELD=VALUE with FIELD one of ID, PID, UID, COMM, EXE, HOST, SIGNAL, SIGNATURE, "
    "UNIT. "
    "Matches of one field are OR-ed, different fields AND-ed";

// "--json{short}" is CLI11's spelling of "a flag whose value defaults to short"; users read
// "--json[=MODE]".
class Formatter : public CLI::Formatter {
public:
  std::string make_option_name(const CLI::Option* opt, bool positional) const override {
    std::string name = CLI::Formatter::make_option_name(opt, positional);
    if (const size_t brace = name.find("{short}"); brace != std::string::npos) {
      name.replace(brace, 7, "[=MODE]");
    }
    return name;
  }
};

// One value per occurrence (CLI11 lets a vector option swallow every following word).
CLI::Option* repeatable(CLI::App* app, const std::string& name, std::vector<std::string>& field,
                        const std::string& type, const std::string& help) {
  return app->add_option(name, field, help)->type_name(type)->allow_extra_args(false);
}

// What the parser binds before it fills Options (CLI11 binds plain values; which options were
// given is asked afterwards).
struct Raw {
  std::string store, config, remote, since, until, values, field, file, output, debugger,
      debugger_args, kernel_release, limit;
  std::string json = "off";
  bool one = false;
  std::vector<CLI::Option*> store_opt, config_opt, remote_opt, since_opt, until_opt, limit_opt,
      values_opt, field_opt, file_opt, output_opt, debugger_opt, debugger_args_opt, release_opt;
};

bool given(const std::vector<CLI::Option*>& opts) {
  return std::any_of(opts.begin(), opts.end(), [](CLI::Option* o) { return o->count() > 0; });
}

// The filters and matches of every verb that reads records. dump and debug take the newest match.
enum class Selects { all, newest };
void add_filters(CLI::App* sub, Options& o, Raw& raw, Selects selects) {
  repeatable(sub, "--host", o.hosts, "NAME", "only crashes of this hostname (repeatable)");
  repeatable(sub, "--exe", o.exes, "PATH|NAME",
             "only this executable, by full path or basename (repeatable)");
  repeatable(sub, "--signal", o.signals, "SIG", "only this signal, by name or number (repeatable)");
  raw.since_opt.push_back(
      sub->add_option("-S,--since", raw.since,
                      "only crashes at or after WHEN: -2h, '2 hours ago', 10min, 08:00, today, "
                      "'yesterday 14:00', 2026-11-22, '2026-11-22 10:30', 2026-11-22T10:30:00Z")
          ->type_name("WHEN"));
  raw.until_opt.push_back(sub->add_option("-U,--until", raw.until, "only crashes at or before WHEN")
                              ->type_name("WHEN"));
  sub->add_option("MATCH", o.matches,
                  std::string(k_match_help) +
                      (selects == Selects::newest ? "; the newest match is used" : ""));
}

// How list, groups and info print.
void add_output(CLI::App* sub, Options& o, Raw& raw) {
  raw.limit_opt.push_back(
      sub->add_option("-n,--limit", raw.limit, "only the newest N")->type_name("N"));
  sub->add_flag("-1", raw.one, "only the newest one (-n 1)");
  sub->add_flag("-r,--reverse", o.reverse, "newest first");
  sub->add_flag("--json{short}", raw.json,
                "JSON: short (one object per line; a bare --json), pretty, off");
  sub->add_flag("--no-legend", o.no_legend, "no column headers");
}

// Options before the verb were accepted anywhere by corectl before it had per-verb options
// ("corectl --json list"): those that are not everyone's move behind the verb, where the verb
// accepts them or says it does not. `verb` is the verb's index.
constexpr std::array<std::string_view, 6> k_global_with_value = {"-D",       "--store", "--config",
                                                                 "--remote", "--color", "--colour"};
// clang-format off
constexpr std::array<std::string_view, 23> k_verb_with_value = {
    "--host", "--exe", "--signal", "-S", "--since", "-U", "--until", "-n", "--limit", "-o",
    "--output", "--debugger", "-A", "--debugger-arguments", "-F", "--field", "--file",
    "--handler", "--sysctl-dir", "--state-dir", "--proc-sys", "--kernel-release", "--in"};
// clang-format on

std::string_view name_of(const std::string& a) {
  return std::string_view(a).substr(0, a.find('='));
}

template <class Set>
bool in(const Set& set, std::string_view name) {
  return std::find(set.begin(), set.end(), name) != set.end();
}

// Whether `arg` is an option whose value is the next word ("--host web1", not "--host=web1").
bool takes_separate_value(const std::string& arg) {
  const std::string_view name = name_of(arg);
  return (in(k_global_with_value, name) || in(k_verb_with_value, name)) &&
         arg.find('=') == std::string::npos;
}

// The first word that is neither an option nor an option's value: where the verb must be.
std::optional<size_t> first_word(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--") {
      return i + 1 < argv.size() ? std::optional<size_t>(i + 1) : std::nullopt;
    }
    if (!argv[i].starts_with('-') || argv[i] == "-") {
      return i;
    }
    if (takes_separate_value(argv[i])) {
      ++i;
    }
  }
  return std::nullopt;
}

// Edits between two short words (Levenshtein), to suggest the verb a typo meant.
size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// A word of the command line printed back in a message: bounded, and escaped (it may have come
// from a pasted alert or a record).
std::string shown_word(std::string_view word) {
  constexpr size_t k_max_shown = 32;
  return common::printable(word.substr(0, k_max_shown));
}

std::string unknown_verb(std::string_view word) {
  const std::string shown = shown_word(word);
  std::string message = "Unknown verb '" + shown + "'";
  for (const Verb& verb : verbs()) {
    if (word.size() < 16 && (distance(word, verb.name) <= 2 || verb.name.starts_with(word))) {
      message += ", did you mean '" + std::string(verb.name) + "'?";
      break;
    }
  }
  std::string names;
  for (const Verb& verb : verbs()) {
    names += (names.empty() ? "" : ", ") + std::string(verb.name);
  }
  message += " Verbs: " + names + "; matches come after the verb (corectl list " + shown + ")";
  return message;
}

std::vector<std::string> verb_options_after_verb(const std::vector<std::string>& argv,
                                                 size_t verb) {
  std::vector<std::string> global, moved;
  for (size_t i = 0; i < verb; ++i) {
    const std::string_view name = name_of(argv[i]);
    // A word that is no option stays before the verb, where it is an error ("corectl x list").
    const bool global_option =
        in(k_global_with_value, name) || name == "--no-pager" || !argv[i].starts_with('-');
    const bool takes_value = in(k_global_with_value, name) || in(k_verb_with_value, name);
    // "--host web1" moves as a pair; "--host=web1" and "-n5" are one word.
    const bool separate_value =
        takes_value && argv[i].find('=') == std::string::npos && i + 1 < verb;
    auto& to = global_option ? global : moved;
    to.push_back(argv[i]);
    if (separate_value) {
      to.push_back(argv[++i]);
    }
  }
  std::vector<std::string> out = std::move(global);
  out.push_back(argv[verb]);
  out.insert(out.end(), moved.begin(), moved.end());
  out.insert(out.end(), argv.begin() + static_cast<std::ptrdiff_t>(verb) + 1, argv.end());
  return out;
}

} // namespace

bool Options::has_filter_options() const {
  return !hosts.empty() || !exes.empty() || !signals.empty() || since || until;
}

std::expected<Options, std::string> parse_options(const std::vector<std::string>& argv_in) {
  Options o;
  std::vector<std::string> argv = argv_in;
  const bool top_level = std::any_of(argv.begin(), argv.end(), [](const std::string& a) {
    return a == "-h" || a == "--help" || a == "--version";
  });
  // The verb is the first word that is neither an option nor an option's value ("corectl
  // --host list" lists the host named list). Any other word there is a mistyped verb ("corectl
  // inf ID"), never a match of an implied "list": that would answer "No crashes found." to a typo.
  const auto word = first_word(argv);
  const bool is_verb = word && find_verb(argv[*word]) != nullptr;
  if (word && !is_verb && !top_level) {
    return std::unexpected(unknown_verb(argv[*word]));
  }
  if (is_verb) {
    argv = verb_options_after_verb(argv, *word);
  } else if (!top_level) {
    // Like coredumpctl, no verb lists: "corectl --host web1" is "corectl list --host web1".
    argv.insert(argv.begin(), "list");
  }

  CLI::App app{"Browse, extract and debug the crashes process-core captured.", "corectl"};
  app.formatter(std::make_shared<Formatter>());
  app.footer(k_footer);
  app.require_subcommand(0, 1);
  app.set_help_flag("-h,--help", "this text (after a verb: that verb's options)");
  Raw raw;
  raw.store_opt.push_back(
      app.add_option("-D,--store", raw.store,
                     "store root (default: from the configuration; -D as coredumpctl's directory)")
          ->type_name("DIR"));
  raw.config_opt.push_back(
      app.add_option("--config", raw.config,
                     "configuration (default /etc/process-core/process-core.conf)")
          ->type_name("FILE"));
  raw.remote_opt.push_back(
      app.add_option("--remote", raw.remote,
                     "the crashes of a fleet's bucket instead of a store (list, info, groups, "
                     "dump, debug): s3://BUCKET/PREFIX as process-core-uploader's upload_url; "
                     "the other upload_* keys from --config, credentials from AWS_* or "
                     "upload_credentials")
          ->type_name("URL"));
  std::string colour = "auto";
  app.add_option("--color,--colour", colour, "auto (default: only on a terminal), always, never")
      ->type_name("WHEN")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_flag("--no-pager", o.no_pager,
               "never page (default on a terminal: $CORECTL_PAGER, $PAGER or less)");
  app.add_flag("-q,--quiet", o.quiet,
               "no informational messages (which crash was taken, \"No crashes found.\"), no "
               "column headers; warnings and errors stay");
  app.add_flag("--version", o.version, "the version");

  // Each verb of the table, with its help line; the options are the verb's own.
  auto verb = [&](std::string_view name) {
    const Verb* v = find_verb(name);
    CLI::App* sub = app.add_subcommand(std::string(name), std::string(v->help));
    sub->fallthrough(); // the options above work after the verb too
    sub->footer(
        "Every verb also takes --store DIR, --config FILE, --remote URL, --color WHEN, --no-pager "
        "and -q "
        "(corectl --help).\n" +
        std::string(k_footer));
    return sub;
  };
  CLI::App* list = verb("list");
  add_filters(list, o, raw, Selects::all);
  add_output(list, o, raw);
  raw.values_opt.push_back(
      list->add_option("--list-values", raw.values, "distinct ids, exes, comms or hosts")
          ->group("")); // for the shell completions
  raw.field_opt.push_back(
      list->add_option("-F,--field", raw.field,
                       "print FIELD of each crash, one per line: coredumpctl's COREDUMP_EXE, "
                       "COREDUMP_PID, COREDUMP_SIGNAL … or a record key (id, executable, "
                       "crash.signature, container.unit …)")
          ->type_name("FIELD"));
  // A core that is not in the store, for the verbs that show or hand over one crash.
  auto add_file = [&](CLI::App* sub) {
    raw.file_opt.push_back(
        sub->add_option("--file", raw.file,
                        "a core file not in the store (read with your rights, analysed here); "
                        "no matches or filters then")
            ->type_name("PATH"));
  };
  for (const char* name : {"groups", "info"}) {
    CLI::App* sub = verb(name);
    add_filters(sub, o, raw, Selects::all);
    add_output(sub, o, raw);
    if (name == std::string_view("info")) {
      add_file(sub);
    }
  }
  CLI::App* dump = verb("dump");
  add_filters(dump, o, raw, Selects::newest);
  add_file(dump);
  raw.output_opt.push_back(
      dump->add_option("-o,--output", raw.output, "write the core to FILE (default: stdout)")
          ->type_name("FILE"));
  CLI::App* debug = verb("debug");
  add_filters(debug, o, raw, Selects::newest);
  add_file(debug);
  raw.debugger_opt.push_back(
      debug
          ->add_option("--debugger", raw.debugger,
                       "debugger command line (default gdb); the executable and the core are "
                       "appended")
          ->type_name("CMD"));
  raw.debugger_args_opt.push_back(
      debug
          ->add_option("-A,--debugger-arguments", raw.debugger_args,
                       "more arguments for the debugger, split like a shell's words (quotes, "
                       "backslashes; no shell runs), after corectl's own gdb options")
          ->type_name("ARGS"));
  debug->add_flag("--debuginfod", o.debuginfod,
                  "let gdb fetch debug files from the servers DEBUGINFOD_URLS names (off by "
                  "default)");
  CLI::App* vacuum = verb("vacuum");
  vacuum->add_flag("--dry-run", o.dry_run, "only say what would be removed");
  add_filters(vacuum, o, raw, Selects::all);
  add_filters(verb("remove"), o, raw, Selects::all);
  CLI::App* resolve = verb("resolve");
  resolve
      ->add_option("GROUP", o.matches,
                   "the group: its signature (or a unique prefix), or the "
                   "\"group\" key groups --json shows")
      ->required()
      ->expected(1);
  resolve
      ->add_option("--in", o.resolve_in,
                   "fixed in PACKAGE=VERSION (later crashes of older versions stay resolved) or "
                   "in an executable build-id (default: in the next build)")
      ->type_name("PACKAGE=VERSION|BUILD-ID");
  verb("unresolve")
      ->add_option("GROUP", o.matches, "the group, as resolve takes it")
      ->required()
      ->expected(1);
  for (const char* name : {"install", "uninstall"}) {
    CLI::App* sub = verb(name);
    sub->add_option("--handler", o.handler, "the handler")
        ->type_name("PATH")
        ->capture_default_str();
    sub->add_option("--sysctl-dir", o.sysctl_dir, "where the drop-in goes")
        ->type_name("DIR")
        ->capture_default_str();
    sub->add_option("--state-dir", o.state_dir,
                    "where previous settings are kept, a directory only root may write")
        ->type_name("DIR")
        ->capture_default_str();
    sub->add_option("--proc-sys", o.proc_sys)->group(""); // tests: a fake /proc/sys
    raw.release_opt.push_back(sub->add_option("--kernel-release", raw.kernel_release)->group(""));
  }

  std::vector<const char*> cargv{"corectl"};
  for (const auto& a : argv) {
    cargv.push_back(a.c_str());
  }
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::CallForHelp&) {
    o.help_text = app.help(); // the chosen verb's help when there is one
    return o;
  } catch (const CLI::ParseError& e) {
    return std::unexpected(std::string(e.what()) + " (see corectl --help)");
  }
  if (const auto subs = app.get_subcommands(); !subs.empty()) {
    o.verb = subs.front()->get_name();
  } else if (!o.version) {
    o.verb = "list";
  }
  auto take = [](const std::vector<CLI::Option*>& opts, std::string& value,
                 std::optional<std::string>& field) {
    if (given(opts)) {
      field = std::move(value);
    }
  };
  take(raw.store_opt, raw.store, o.store);
  take(raw.config_opt, raw.config, o.config);
  take(raw.remote_opt, raw.remote, o.remote);
  take(raw.since_opt, raw.since, o.since);
  take(raw.until_opt, raw.until, o.until);
  take(raw.values_opt, raw.values, o.values);
  take(raw.field_opt, raw.field, o.field);
  take(raw.file_opt, raw.file, o.file);
  take(raw.debugger_args_opt, raw.debugger_args, o.debugger_args);
  take(raw.output_opt, raw.output, o.output);
  take(raw.debugger_opt, raw.debugger, o.debugger);
  take(raw.release_opt, raw.kernel_release, o.kernel_release);
  if (given(raw.limit_opt)) {
    // Parsed here, not by CLI11, whose range error for "-n abc" prints a 300-digit bound.
    const auto limit = common::parse_number<size_t>(raw.limit);
    if (!limit) {
      return std::unexpected("-n takes a number of crashes, not '" + shown_word(raw.limit) + "'");
    }
    o.limit = *limit;
  }
  o.colour = colour == "always"  ? Colour::always
             : colour == "never" ? Colour::never
                                 : Colour::auto_;
  if (raw.json == "off") {
    o.json = JsonMode::off;
  } else if (raw.json == "short") {
    o.json = JsonMode::short_;
  } else if (raw.json == "pretty") {
    o.json = JsonMode::pretty;
  } else {
    return std::unexpected("--json takes short, pretty or off, not '" + raw.json + "'");
  }
  if (o.file && (!o.matches.empty() || o.has_filter_options() || given(raw.limit_opt) || raw.one ||
                 o.reverse)) {
    return std::unexpected(std::string(
        "--file names the one core to work on: no matches, filters, -n, -1 or -r with it"));
  }
  if (o.field && o.json != JsonMode::off) {
    return std::unexpected(std::string("-F and --json contradict each other"));
  }
  if (raw.one) {
    if (o.limit && *o.limit != 1) {
      return std::unexpected("-1 and -n " + std::to_string(*o.limit) + " contradict each other");
    }
    o.limit = 1;
  }
  return o;
}

} // namespace cli
