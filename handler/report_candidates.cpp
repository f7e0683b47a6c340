// The files a crashed process names for its runtime's report, from its environment and argv
// (runtime_report.hpp): pure parsing of what the crasher wrote, tested on its own.
#include "handler/runtime_report.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace handler {

namespace {

std::vector<std::string_view> split(std::string_view s, std::string_view seps) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = s.find_first_not_of(seps, i);
    if (start == std::string_view::npos) {
      break;
    }
    const size_t end = s.find_first_of(seps, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    i = end == std::string_view::npos ? s.size() : end;
  }
  return out;
}

// %p and %% expanded (the JVM's and Ruby's specifiers for the pid); nullopt for any other.
std::optional<std::string> expand_pid(std::string_view s, int64_t pid) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 1 >= s.size()) {
      return std::nullopt;
    }
    ++i;
    if (s[i] == '%') {
      out += '%';
    } else if (s[i] == 'p') {
      out += std::to_string(pid);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::string_view value_of(std::string_view var, std::string_view name) {
  return var.substr(name.size() + 1);
}

} // namespace

std::vector<ReportCandidate> report_candidates(std::string_view environ, std::string_view argv,
                                               std::string_view exe, int64_t pid) {
  std::vector<ReportCandidate> out;
  std::vector<std::string_view> jvm_options;
  std::vector<std::string_view> node_options;
  const auto args = split(argv, std::string_view("\0", 1));
  bool java =
      exe.substr(exe.rfind('/') == std::string_view::npos ? 0 : exe.rfind('/') + 1) == "java";
  bool node = false;
  std::optional<std::string_view> ruby;
  for (const std::string_view var : split(environ, std::string_view("\0", 1))) {
    for (const std::string_view name : {"JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"}) {
      if (var.starts_with(name) && var.size() > name.size() && var[name.size()] == '=') {
        java = true;
        for (const auto o : split(value_of(var, name), " \t\n")) {
          jvm_options.push_back(o);
        }
      }
    }
    if (var.starts_with("NODE_OPTIONS=")) {
      for (const auto o : split(value_of(var, "NODE_OPTIONS"), " \t\n")) {
        node_options.push_back(o);
      }
    } else if (var.starts_with("RUBY_CRASH_REPORT=")) {
      ruby = value_of(var, "RUBY_CRASH_REPORT");
    }
  }
  if (!args.empty()) {
    const std::string_view a0 = args[0];
    const std::string_view base =
        a0.substr(a0.rfind('/') == std::string_view::npos ? 0 : a0.rfind('/') + 1);
    java = java || base == "java";
    node = base == "node" || base == "nodejs";
  }
  const std::string_view e =
      exe.substr(exe.rfind('/') == std::string_view::npos ? 0 : exe.rfind('/') + 1);
  node = node || e == "node" || e == "nodejs";
  for (size_t i = 1; i < args.size(); ++i) {
    if (java) {
      jvm_options.push_back(args[i]);
    }
    if (node) {
      node_options.push_back(args[i]);
    }
  }

  // The JVM: -XX:ErrorFile=, the last one wins; else hs_err_pid<pid>.log in the working
  // directory, then in /tmp (where the JVM writes it when the working directory is not writable).
  if (java) {
    std::optional<std::string_view> error_file;
    for (const auto o : jvm_options) {
      if (o.starts_with("-XX:ErrorFile=")) {
        error_file = o.substr(14);
      }
    }
    if (error_file && !error_file->empty()) {
      ReportCandidate c{"jvm", std::string(*error_file), "", false, false};
      if (auto p = expand_pid(*error_file, pid)) {
        c.path = *p;
      }
      out.push_back(std::move(c));
    } else {
      const std::string name = "hs_err_pid" + std::to_string(pid) + ".log";
      out.push_back({"jvm", name, name, false, true});
      out.push_back({"jvm", "/tmp/" + name, "/tmp/" + name, false, true});
    }
  }
  if (ruby && !ruby->empty()) {
    ReportCandidate c{"ruby", std::string(*ruby), "", false, false};
    if (!ruby->starts_with('|')) {
      if (auto p = expand_pid(*ruby, pid)) {
        c.path = *p;
      }
    }
    out.push_back(std::move(c));
  }
  // Node: --report-on-fatalerror (or another report trigger), --report-directory, and
  // --report-filename ("stdout" and "stderr" are no file).
  bool report = false;
  std::string dir;
  std::optional<std::string> file;
  for (size_t i = 0; i < node_options.size(); ++i) {
    const std::string_view o = node_options[i];
    auto value = [&](std::string_view opt) -> std::optional<std::string> {
      if (o.starts_with(opt) && o.size() > opt.size() && o[opt.size()] == '=') {
        return std::string(o.substr(opt.size() + 1));
      }
      if (o == opt && i + 1 < node_options.size()) {
        return std::string(node_options[++i]);
      }
      return std::nullopt;
    };
    if (o == "--report-on-fatalerror" || o == "--report-uncaught-exception" ||
        o == "--report-on-signal") {
      report = true;
    } else if (auto d = value("--report-directory")) {
      dir = *d;
    } else if (auto d2 = value("--report-dir")) {
      dir = *d2;
    } else if (auto f = value("--report-filename")) {
      file = *f;
    }
  }
  if (report && !(file && (*file == "stdout" || *file == "stderr"))) {
    if (file && !file->empty()) {
      const std::string p = dir.empty() ? *file : dir + "/" + *file;
      out.push_back({"node", p, p, false, false});
    } else {
      out.push_back({"node",
                     dir.empty() ? "report.*." + std::to_string(pid) + ".*.json"
                                 : dir + "/report.*." + std::to_string(pid) + ".*.json",
                     dir, true, false});
    }
  }
  return out;
}

} // namespace handler
