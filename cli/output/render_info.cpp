// corectl info: one crash told in full, its site, frames, findings and the runtime's report
// (render.hpp).
#include "cli/output/render.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/python/merge.hpp"

#include <cstdio>
#include <string_view>

namespace cli {

namespace {

using nlohmann::json;

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

} // namespace

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
