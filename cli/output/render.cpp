#include "cli/output/render.hpp"

#include "cli/output/pager.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/python/merge.hpp"
#include "common/packages/group_state.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>

namespace cli {

namespace {

using nlohmann::json;

// Display width in columns: one per code point (continuation bytes take none). Wide characters
// are rare in the names we show and counted as one; alignment suffers, never correctness.
size_t width_of(std::string_view s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; }));
}

// Byte offset of the first code point after skipping `cols` columns.
size_t offset_of_col(std::string_view s, size_t cols) {
  size_t i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (cols == 0) {
        break;
      }
      --cols;
    }
  }
  return i;
}

std::string fit(std::string_view s, size_t width, bool keep_end) {
  const size_t w = width_of(s);
  if (w <= width) {
    return std::string(s);
  }
  if (width <= 1) {
    return "…";
  }
  if (keep_end) {
    return "…" + std::string(s.substr(offset_of_col(s, w - (width - 1))));
  }
  return std::string(s.substr(0, offset_of_col(s, width - 1))) + "…";
}

// A JSON scalar as text: strings as they are, numbers in decimal, anything else as JSON.
std::string text(const json& j) {
  if (j.is_string()) {
    return printable(j.get_ref<const std::string&>());
  }
  if (j.is_null()) {
    return "-";
  }
  return printable(j.dump());
}

// True when `obj` has `key` with a non-null value (the scanner writes null for unknowns).
bool has(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return false;
  }
  auto it = obj.find(key);
  return it != obj.end() && !it->is_null();
}

std::string field(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return "-";
  }
  auto it = obj.find(key);
  return it == obj.end() ? "-" : text(*it);
}

std::string_view core_sgr(std::string_view cell) {
  if (cell == "stored") {
    return "32";
  }
  if (cell == "removed") {
    return "2";
  }
  return "33";
}

std::string_view sig_sgr(std::string_view) {
  return "31";
}

std::string short_sig(const std::string& sig) {
  return sig.empty() ? "-" : printable(sig.substr(0, 12));
}

std::string with_more(const std::vector<std::string>& names) {
  if (names.empty()) {
    return "-";
  }
  std::string s = printable(names.front());
  if (names.size() > 1) {
    s += " +" + std::to_string(names.size() - 1);
  }
  return s;
}

// The newest of several versions, and how many others there were.
std::string with_more_last(const std::vector<std::string>& names) {
  std::string s = printable(names.back());
  if (names.size() > 1) {
    s += " +" + std::to_string(names.size() - 1);
  }
  return s;
}

std::string_view state_sgr(std::string_view state) {
  return state == "regressed" ? "1;31" : state == "new" ? "33" : state == "resolved" ? "32" : "";
}

} // namespace

void print_json(const json& j, bool pretty) {
  // JSON escapes C0 controls but passes C1 ones (U+009B is CSI to some terminals) and bidi
  // overrides through: on a terminal, everything beyond ASCII is written as \uNNNN.
  const bool ascii = paging() || ::isatty(STDOUT_FILENO) == 1;
  const std::string text =
      j.dump(pretty ? 2 : -1, ' ', ascii, json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
}

std::string local_time(int64_t epoch_seconds) {
  if (epoch_seconds == 0) {
    return "-";
  }
  const auto t = static_cast<time_t>(epoch_seconds);
  struct tm tm {};
  localtime_r(&t, &tm);
  // coredumpctl's and journalctl's form, which -S and -U read back. A zone whose abbreviation is
  // no word ("-03") is written as its offset ("-0300"), which they read too.
  char zone[16];
  const size_t zn = std::strftime(zone, sizeof zone, "%Z", &tm);
  const bool word = zn > 0 && std::isalpha(static_cast<unsigned char>(zone[0])) != 0;
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf,
                                 word ? "%a %Y-%m-%d %H:%M:%S %Z" : "%a %Y-%m-%d %H:%M:%S %z", &tm);
  return std::string(buf, n);
}

std::string core_state(const Crash& c) {
  if (c.core_removed) {
    return "removed";
  }
  if (c.core_present) {
    return std::string(common::to_string(c.core_reason)); // stored, truncated, not_elf …
  }
  return "none:" + std::string(common::to_string(c.core_reason));
}

std::vector<Group> group_crashes(const std::vector<Crash>& crashes) {
  // Views into `crashes`, which outlive the groups' building: no string per crash.
  struct Acc {
    Group g;
    std::set<std::string_view> hosts;
    std::set<std::string_view> exes;
    const Crash* last = nullptr;
    const std::string* site = nullptr; // the newest non-empty site
  };
  // By signature, or by executable and signal for crashes without one (the two kinds kept
  // apart). The groups' order is the final sort's alone: (last, last_id) differs between
  // any two groups, since an id is in one group.
  std::unordered_map<std::string_view, Acc> by_signature;
  std::map<std::pair<std::string_view, int>, Acc> by_exe_signal;
  for (const auto& c : crashes) {
    bool fresh = false;
    Acc* acc = nullptr;
    if (c.signature.empty()) {
      auto [it, inserted] = by_exe_signal.try_emplace({c.executable, c.signal});
      acc = &it->second;
      fresh = inserted;
    } else {
      auto [it, inserted] = by_signature.try_emplace(c.signature);
      acc = &it->second;
      fresh = inserted;
    }
    Acc& a = *acc;
    if (fresh) {
      a.g.key = common::group_key(c.signature, c.executable, c.signal);
      a.g.signature = c.signature;
      a.g.executable_key = c.executable;
      a.g.signal = c.signal;
      a.g.signal_name = c.signal_name;
      a.g.first = c.time;
    }
    ++a.g.count;
    // Crashes come oldest first, so the last one seen is the newest.
    a.last = &c;
    if (!c.site.empty()) {
      a.site = &c.site;
    }
    a.hosts.insert(c.hostname);
    a.exes.insert(c.executable);
  }
  std::vector<Group> out;
  out.reserve(by_signature.size() + by_exe_signal.size());
  auto finish = [&](Acc& a) {
    a.g.last = a.last->time;
    a.g.last_id = a.last->id;
    if (a.site) {
      a.g.site = *a.site;
    }
    a.g.hosts.assign(a.hosts.begin(), a.hosts.end());
    a.g.executables.assign(a.exes.begin(), a.exes.end());
    out.push_back(std::move(a.g));
  };
  for (auto& kv : by_signature) {
    finish(kv.second);
  }
  for (auto& kv : by_exe_signal) {
    finish(kv.second);
  }
  std::sort(out.begin(), out.end(), [](const Group& a, const Group& b) {
    return a.last != b.last ? a.last < b.last : a.last_id < b.last_id;
  });
  return out;
}

void print_table(const Term& term, const std::vector<Column>& columns,
                 const std::vector<std::vector<std::string>>& rows, Legend legend) {
  std::vector<size_t> widths;
  for (const auto& c : columns) {
    widths.push_back(width_of(c.header));
  }
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], width_of(row[i]));
    }
  }
  if (term.width > 0) {
    size_t total = 0;
    for (size_t w : widths) {
      total += w;
    }
    total += 2 * (widths.size() - 1);
    for (size_t i = 0; i < columns.size() && total > term.width; ++i) {
      if (columns[i].min_width > 0 && widths[i] > columns[i].min_width) {
        const size_t give = std::min(widths[i] - columns[i].min_width, total - term.width);
        widths[i] -= give;
        total -= give;
      }
    }
  }
  // Lines go into one buffer written in large pieces: a list of 100,000 crashes is rendered
  // without a string per cell.
  std::string out;
  constexpr size_t k_flush = 256 << 10;
  auto emit = [&](const std::vector<std::string>& cells, bool header) {
    for (size_t i = 0; i < columns.size(); ++i) {
      static const std::string none;
      const std::string& cell = i < cells.size() ? cells[i] : none;
      const bool last = i + 1 == columns.size();
      std::string_view sgr;
      if (header) {
        sgr = "1";
      } else if (columns[i].sgr != nullptr && cell != "-") {
        sgr = columns[i].sgr(cell);
      }
      const bool padded = !last || columns[i].right;
      const size_t w = width_of(cell);
      if (!sgr.empty() && term.colour) {
        // Painted as before: the fitted and padded cell inside the SGR sequence.
        std::string shown = fit(cell, widths[i], columns[i].keep_end);
        const size_t sw = width_of(shown);
        if (padded && sw < widths[i]) {
          const std::string fill(widths[i] - sw, ' ');
          shown = columns[i].right ? fill + shown : shown + fill;
        }
        out += term.paint(sgr, shown);
      } else {
        const size_t fill = padded && w < widths[i] ? widths[i] - w : 0;
        if (columns[i].right) {
          out.append(fill, ' ');
        }
        if (w <= widths[i]) {
          out += cell;
        } else {
          out += fit(cell, widths[i], columns[i].keep_end);
        }
        if (!columns[i].right) {
          out.append(fill, ' ');
        }
      }
      if (!last) {
        out += "  ";
      }
    }
    out += '\n';
    if (out.size() >= k_flush) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  };
  std::vector<std::string> header;
  for (const auto& c : columns) {
    header.push_back(c.header);
  }
  if (legend == Legend::show) {
    emit(header, true);
  }
  for (const auto& row : rows) {
    emit(row, false);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void print_list(const Term& term, const std::vector<Crash>& crashes, size_t id_abbrev,
                Legend legend) {
  const std::vector<Column> columns = {
      {"TIME"},
      {"ID"},
      {"HOST", false, 8},
      {"EXECUTABLE", false, 16, true},
      {"SIG", false, 0, false, sig_sgr},
      {"PID", true},
      {"UID", true},
      {"CORE", false, 0, false, core_sgr},
      {"SIZE", true},
      {"SIGNATURE"},
  };
  std::vector<std::vector<std::string>> rows;
  rows.reserve(crashes.size());
  for (const auto& c : crashes) {
    rows.push_back({
        local_time(c.time),
        c.id.substr(0, id_abbrev),
        printable(c.hostname),
        printable(c.executable) + (c.executable_deleted ? " (deleted)" : ""),
        c.signal_name.empty() ? std::to_string(c.signal) : printable(c.signal_name),
        c.pid ? std::to_string(*c.pid) : "-",
        c.uid ? std::to_string(*c.uid) : "-",
        core_state(c),
        c.core_size > 0 ? human_size(c.core_size) : "-",
        short_sig(c.signature),
    });
  }
  print_table(term, columns, rows, legend);
}

void print_groups(const Term& term, const std::vector<Group>& groups, Legend legend) {
  const std::vector<Column> columns = {
      {"SIGNATURE"},
      {"STATE", false, 0, false, state_sgr},
      {"COUNT", true},
      {"FIRST"},
      {"LAST"},
      {"HOSTS", false, 8},
      {"EXECUTABLE", false, 16, true},
      {"SIG", false, 0, false, sig_sgr},
      {"SITE", false, 8},
      {"VERSIONS", false, 8},
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : groups) {
    rows.push_back({
        g.signature.empty() ? "(exe+signal)" : short_sig(g.signature),
        g.state.empty() ? "-" : g.state,
        std::to_string(g.count),
        local_time(g.first),
        local_time(g.last),
        with_more(g.hosts),
        with_more(g.executables),
        g.signal_name.empty() ? std::to_string(g.signal) : printable(g.signal_name),
        g.site.empty() ? "-" : printable(g.site),
        g.versions.empty() ? "-" : with_more_last(g.versions),
    });
  }
  print_table(term, columns, rows, legend);
}

namespace {

// Schema 2: every thread's backtrace, the crashing thread first (the handler writes it first).
// Frames found by CFI or from the registers are the norm; the others say how they were found.
// With the record's `python` section, each thread's Python frames follow the evaluation-loop
// frames that ran them, as py-bt shows them (crash::python::merge_python_frames' rule).
void print_stacks(const Term& term, const json& stacks, const json& python, std::string& out) {
  const crash::python::PythonStacks py = crash::python::python_stacks_from_json(python);
  const auto py_line = [&](const crash::python::PyFrame& p) {
    return "      File \"" + printable(p.file) + "\", line " +
           (p.line < 0 ? std::string("???") : std::to_string(p.line)) + ", in " +
           printable(p.function) + "\n";
  };
  for (const auto& t : stacks) {
    if (!t.is_object()) {
      continue;
    }
    const crash::python::PyThread* py_thread =
        t.contains("tid") && t["tid"].is_number_integer()
            ? crash::python::thread_for_tid(py, t["tid"].get<int64_t>())
            : nullptr;
    std::vector<std::span<const crash::python::PyFrame>> runs;
    if (py_thread != nullptr) {
      runs = crash::python::python_runs(*py_thread);
    }
    size_t run = 0;
    std::string title = "Thread " + field(t, "tid");
    if (has(t, "name")) {
      title += " (" + field(t, "name") + ")";
    }
    if (has(t, "state")) {
      title += " state " + field(t, "state");
    }
    if (t.value("crashing", false)) {
      title += ", crashed";
    }
    out += "\n" + term.paint("1", title) + ":\n";
    const auto frames = t.find("frames");
    size_t n = 0;
    for (const auto& f : frames != t.end() && frames->is_array() ? *frames : json::array()) {
      if (!f.is_object()) {
        continue;
      }
      std::string name = "??";
      if (const auto sym = f.find("symbol"); sym != f.end() && sym->is_object()) {
        name = printable(sym->value("name", std::string("??")));
        const std::string off = sym->value("offset", std::string());
        if (!off.empty() && off != "0x0" && !f.value("inlined", false)) {
          name += "+" + printable(off);
        }
      }
      if (f.value("signal_frame", false)) {
        name += " <signal handler called>";
      }
      std::string line = "  #" + std::to_string(n++) + "  " + field(f, "pc") + "  " + name;
      if (f.value("inlined", false)) {
        line += " (inlined)";
      }
      if (has(f, "file")) {
        line += " at " + field(f, "file") + (has(f, "line") ? ":" + field(f, "line") : "");
      } else if (has(f, "module")) {
        line += " (" + field(f, "module") +
                (has(f, "module_offset") ? " + " + field(f, "module_offset") : "") + ")";
      } else if (f.value("jit", false)) {
        line += " (JIT code)"; // named, when it is, by the process's perf map
      }
      const std::string trust = f.value("trust", std::string());
      if (trust != "cfi" && trust != "context") {
        line += " [" + printable(trust.empty() ? "?" : trust) + "]";
      }
      out += line + "\n";
      const auto sym = f.find("symbol");
      if (run < runs.size() && !f.value("inlined", false) && sym != f.end() && sym->is_object() &&
          sym->value("name", std::string()) == "_PyEval_EvalFrameDefault") {
        for (const auto& p : runs[run++]) {
          out += py_line(p);
        }
      }
    }
    for (; run < runs.size(); ++run) {
      for (const auto& p : runs[run]) {
        out += py_line(p);
      }
    }
    if (has(t, "error")) {
      out += "  (" + field(t, "error") + ")\n";
    }
  }
}

// The record's runtime_report section and the report itself, line by line, each escaped.
void print_runtime_report(const Term& term, const json& rr, const InfoPlaces& places,
                          std::string& out) {
  if (!rr.is_object() || rr.empty()) {
    return;
  }
  out += "\n" + term.paint("1", "Runtime report") + ": " + field(rr, "runtime") + " " +
         field(rr, "path");
  if (has(rr, "refused")) {
    out += " (not kept: " + field(rr, "refused") + ")\n";
    return;
  }
  out += " (" + field(rr, "size") + " bytes kept";
  if (const auto cut = rr.find("truncated");
      cut != rr.end() && cut->is_boolean() && cut->get<bool>()) {
    out += ", cut from " + field(rr, "file_size");
  }
  out += ")\n";
  if (has(rr, "removed")) {
    out += "  (removed with the core by retention at " + field(rr, "removed") + ")\n";
    return;
  }
  if (!places.runtime_report) {
    out += "  (" +
           (places.runtime_report_absent.empty() ? std::string("the stored report is missing")
                                                 : printable(places.runtime_report_absent)) +
           ")\n";
    return;
  }
  std::string_view rest = *places.runtime_report;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    out += "  " + printable(rest.substr(0, nl)) + "\n";
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  }
  if (places.runtime_report_rest > 0) {
    out += "  ... (" + std::to_string(places.runtime_report_rest) +
           " more bytes in the stored report)\n";
  }
}

} // namespace

void print_info(const Term& term, const FullRecord& full, const InfoPlaces& places) {
  const common::Record& r = full.record;
  const json& crash = r.crash;
  std::string out;
  auto line = [&](std::string_view key, const std::string& value) {
    std::string k(key);
    out += std::string(k.size() < 14 ? 14 - k.size() : 0, ' ') + term.paint("1", k) + ": " + value +
           "\n";
  };
  auto opt = [](const auto& v) { return v ? std::to_string(*v) : std::string("-"); };

  line("ID", r.id.empty() ? "-" : printable(r.id)); // none for a core given with --file
  const auto t = common::parse_time(r.time);
  line("Time", t ? local_time(*t) + " (" + printable(r.time) + ")" : printable(r.time));
  line("Hostname", r.hostname.empty() ? "-" : printable(r.hostname));
  // The node the handler ran on: its own name, machine-id and boot-id (older records have none),
  // typed by the store's owner like every other field.
  if (!r.node.empty()) {
    std::string node = has(r.node, "hostname") ? field(r.node, "hostname") : "-";
    for (const char* key : {"machine_id", "boot_id"}) {
      if (has(r.node, key)) {
        node +=
            std::string(", ") + (key[0] == 'm' ? "machine-id " : "boot-id ") + field(r.node, key);
      }
    }
    line("Node", node);
  }
  line("Executable", printable(r.executable) + (r.executable_deleted ? " (deleted)" : ""));
  line("Command line", r.cmdline.empty() ? "-" : printable(r.cmdline));
  line("Comm", r.comm.empty() ? "-" : printable(r.comm));
  line("PID", opt(r.pid) + (r.tid ? " (thread " + std::to_string(*r.tid) + ")" : ""));
  line("UID/GID", opt(r.uid) + "/" + opt(r.gid));
  line("Dump mode",
       r.dump_mode ? std::to_string(*r.dump_mode) + (*r.dump_mode == 2 ? " (suid_dumpable)" : "")
                   : "-");
  line("RLIMIT_CORE", !r.rlimit_core                 ? "-"
                      : *r.rlimit_core == UINT64_MAX ? "unlimited"
                                                     : human_size(*r.rlimit_core));

  std::string sig = std::to_string(r.signal) + " (" + printable(r.signal_name) + ")";
  if (has(crash, "si_code")) {
    sig += ", si_code " + field(crash, "si_code");
    if (has(crash, "si_code_name")) {
      sig += " (" + field(crash, "si_code_name") + ")";
    }
  }
  line("Signal", term.paint("31", sig));
  if (const std::string cause = common::crash_cause_detail(crash); !cause.empty()) {
    line("Cause", "SIG" + printable(r.signal_name) + printable(cause));
  }
  line("Fault address", field(crash, "fault_address"));
  line("PC", field(crash, "pc"));
  std::string module = field(crash, "module");
  if (has(crash, "module") && has(crash, "module_offset")) {
    module += " + " + field(crash, "module_offset");
  }
  line("Module", module);
  // The handler writes {name, offset, verified}: verified means the module on disk had the
  // core's build-id when the name was looked up.
  if (const auto it = crash.find("symbol"); it != crash.end() && it->is_object()) {
    // Typed by the store's owner, not by us: a field of the wrong type is shown, never thrown.
    const std::string off = has(*it, "offset") ? field(*it, "offset") : "";
    const auto verified = it->find("verified");
    line("Symbol", field(*it, "name") + (off.empty() || off == "0x0" ? "" : "+" + off) +
                       (verified != it->end() && verified->is_boolean() && verified->get<bool>()
                            ? " (build-id verified)"
                            : " (unverified)"));
  } else {
    line("Symbol", field(crash, "symbol"));
  }
  line("Build-ID", field(crash, "build_id"));
  line("Signature",
       field(crash, "signature") +
           (has(crash, "signature_chain") ? " (" + field(crash, "signature_chain") + ")" : ""));
  if (auto it = crash.find("threads"); it != crash.end()) {
    line("Threads", it->is_array() ? std::to_string(it->size()) : text(*it));
  } else {
    line("Threads", "-");
  }

  if (r.container.empty()) {
    line("Container", "-");
  } else {
    bool first = true;
    for (const auto& [k, v] : r.container.items()) {
      line(first ? "Container" : "", printable(k) + ": " + text(v));
      first = false;
    }
  }

  const auto& core = r.core;
  std::string state;
  if (core.removed) {
    state = "removed by retention at " + printable(*core.removed) +
            (core.removed_before_upload ? ", before it was uploaded" : "") +
            " (captured: " + std::string(common::to_string(core.reason)) + ")";
  } else if (core.present) {
    state = std::string(common::to_string(core.reason));
  } else {
    state = "none: " + std::string(common::to_string(core.reason));
  }
  if (!core.error.empty()) {
    state += " (" + printable(core.error) + ")";
  }
  line("Core", state);
  if (core.present) {
    std::string sizes = human_size(core.size) + " received";
    if (core.expected_size) {
      sizes += " of " + human_size(*core.expected_size);
    }
    sizes += ", " + human_size(core.stored_size) + " stored (" + printable(core.compression) + ")";
    line("Core size", sizes);
    line("Core access",
         core.access == common::CoreAccess::owner ? "crashing user and root" : "root only");
    line("Core file", core.removed ? "-"
                                   : printable(places.core_file) +
                                         (places.core_file_exists ? "" : " (missing)"));
  }
  line("Record",
       places.record_file.empty() ? "- (a core not in the store)" : printable(places.record_file));
  line("Handler", (r.handler.version.empty() ? "-" : printable(r.handler.version)));
  for (size_t i = 0; i < r.handler.warnings.size(); ++i) {
    line(i == 0 ? "Warnings" : "", printable(r.handler.warnings[i]));
  }
  print_changes(term, full.json, out); // cli/output/render_packages.cpp

  if (r.python.is_object() && !r.python.empty()) {
    const auto py = crash::python::python_stacks_from_json(r.python);
    line("Python", printable(std::string(crash::python::status_name(py.status))) +
                       (py.version.empty() ? "" : " " + printable(py.version)) + ", " +
                       std::to_string(py.threads.size()) + " threads" +
                       (py.finalizing ? ", finalizing" : "") +
                       (py.detail.empty() ? "" : ": " + printable(py.detail)) +
                       (py.cut.empty() ? "" : " (" + printable(py.cut) + ")") +
                       (py.source == "core" ? " (read afterwards from the core)" : ""));
  }
  const bool native =
      crash.contains("stacks") && crash["stacks"].is_array() && !crash["stacks"].empty();
  if (!native && r.python.is_object() && !r.python.empty()) {
    // No native backtrace (the core was not read): the Python stacks as faulthandler shows them.
    const auto py = crash::python::python_stacks_from_json(r.python);
    out += "\n" + term.paint("1", "Python stacks") + ":\n";
    const std::string text =
        crash::python::render_traceback(py, static_cast<uint64_t>(r.tid.value_or(0)));
    for (std::string_view rest = text; !rest.empty();) {
      const size_t nl = rest.find('\n');
      out += printable(std::string(rest.substr(0, nl))) + "\n";
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
  }
  if (auto it = crash.find("stacks"); it != crash.end() && it->is_array() && !it->empty()) {
    print_stacks(term, *it, r.python, out);
  } else if (auto fr = crash.find("frames"); fr != crash.end() && fr->is_array() && !fr->empty()) {
    // Schema 1: best-effort candidates of the crashing thread only.
    out += "\n" + term.paint("1", "Frames") + ":\n";
    size_t n = 0;
    for (const auto& f : *fr) {
      std::string where = field(f, "module");
      if (has(f, "offset")) {
        where += " + " + field(f, "offset");
      }
      out += "  #" + std::to_string(n++) + "  " + field(f, "address") + "  " + field(f, "symbol") +
             "  (" + where + ")\n";
    }
  }
  if (r.mappings.is_array() && !r.mappings.empty()) {
    out += "\n" + term.paint("1", "Mapped files") + ":\n";
    for (const auto& m : r.mappings) {
      out += "  " + field(m, "path");
      if (has(m, "build_id")) {
        out += "  build-id " + field(m, "build_id");
      }
      out += owner_suffix(r.packages, m) + "\n"; // cli/output/render_packages.cpp
      if (auto f = m.is_object() ? m.find("findings") : m.end();
          m.is_object() && f != m.end() && f->is_array()) {
        for (const auto& finding : *f) {
          // {kind, detail} as the handler writes it; anything else (the store owner's) as text.
          const std::string shown = has(finding, "kind")
                                        ? field(finding, "kind") + ": " + field(finding, "detail")
                                        : text(finding);
          out += "    " + term.paint("33", "! " + shown) + "\n";
        }
      }
    }
  }
  print_runtime_report(term, r.runtime_report, places, out);
  std::fwrite(out.data(), 1, out.size(), stdout);
}

} // namespace cli
