// scan_core: reads an ELF core on stdin, prints the scanner's facts as JSON (for the integration
// tests and for looking at a core by hand), the crash object with the scanner's best-effort
// frames. With --resolve, also resolves the crash symbol and checks the mapped files on disk, as
// the handler would; with --unwind, unwinds every thread and prints the crash object the handler
// writes (stacks, signature v2, no best-effort frames) instead; with --legacy-frames, adds the
// names the schema-1 handler gave the crash site and its best-effort frames. With --sandboxed the
// unwinding runs as the handler runs it: the files opened first, the analysis in the sandboxed
// child (common/sandbox/analysis_child), which opens nothing itself.
//
//   scan_core [--resolve] [--unwind [--sandboxed] [--debug-dir DIR]…] [--legacy-frames]
//             [--chunk N] < core
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/crash/analysis.hpp"
#include "common/crash/analysis_wire.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/symbolize.hpp"
#include "common/crash/unwind.hpp"
#include "common/sandbox/analysis_child.hpp"
#include "common/store/record_bound.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string_view>
#include <utility>
#include <vector>

namespace {

nlohmann::json extra_facts(const common::CoreFacts& f) {
  nlohmann::json j;
  j["is_elf"] = f.is_elf;
  j["phnum"] = f.phnum;
  j["pid"] = f.pid ? nlohmann::json(*f.pid) : nullptr;
  j["uid"] = f.uid ? nlohmann::json(*f.uid) : nullptr;
  j["gid"] = f.gid ? nlohmann::json(*f.gid) : nullptr;
  j["fname"] = common::to_valid_utf8(f.fname);
  j["psargs"] = common::to_valid_utf8(f.psargs);
  j["at_secure"] = f.at_secure ? nlohmann::json(*f.at_secure) : nullptr;
  j["at_uid"] = f.at_uid ? nlohmann::json(*f.at_uid) : nullptr;
  j["at_euid"] = f.at_euid ? nlohmann::json(*f.at_euid) : nullptr;
  j["files"] = f.files.size();
  j["signature_input"] = common::to_valid_utf8(f.signature_input);
  nlohmann::json ids = nlohmann::json::object();
  for (const auto& [path, id] : f.build_ids) {
    ids[common::to_valid_utf8(path)] = id;
  }
  j["build_ids"] = std::move(ids);
  return j;
}

} // namespace

int main(int argc, char** argv) {
  bool resolve = false;
  bool unwind = false;
  bool legacy = false;
  bool sandboxed = false;
  std::vector<std::string> debug_dirs;
  size_t chunk = 65536;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--resolve") {
      resolve = true;
    } else if (a == "--unwind") {
      unwind = true;
    } else if (a == "--sandboxed") {
      sandboxed = true;
    } else if (a == "--legacy-frames") {
      legacy = true;
    } else if (a == "--debug-dir" && i + 1 < argc) {
      debug_dirs.emplace_back(argv[++i]);
    } else if (a == "--chunk" && i + 1 < argc) {
      chunk = std::max<size_t>(1, std::strtoul(argv[++i], nullptr, 10));
    } else {
      std::cerr << "usage: scan_core [--resolve] [--unwind [--sandboxed] [--debug-dir DIR]…] "
                   "[--legacy-frames] [--chunk N] < core\n";
      return 2;
    }
  }
  common::CoreScanner scanner;
  std::vector<std::byte> buf(chunk);
  for (;;) {
    const ssize_t n = read(STDIN_FILENO, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      std::cerr << "scan_core: read failed: " << std::strerror(errno) << "\n";
      return 1;
    }
    if (n == 0) {
      break;
    }
    scanner.observe(std::span(buf).first(static_cast<size_t>(n)));
  }
  scanner.finish();
  const auto& f = scanner.facts();
  std::optional<common::ResolvedSymbol> symbol;
  std::vector<common::MappingFinding> findings;
  if (resolve) {
    if (f.module && f.module_offset) {
      symbol = common::resolve_symbol(*f.module, *f.module_offset, f.build_id.value_or(""));
    }
    findings = common::check_mapped_files(f.files, f.build_ids, std::nullopt);
  }
  nlohmann::json out;
  if (legacy) {
    // What the schema-1 handler showed: the crash symbol, then each best-effort stack candidate
    // resolved the same way (for the benchmark against the unwinder).
    nlohmann::json names = nlohmann::json::array();
    auto name_of = [&](const std::string& module, std::optional<uint64_t> offset) {
      if (module.empty() || !offset) {
        return std::string("??");
      }
      const auto id = f.build_ids.find(module);
      const auto sym =
          common::resolve_symbol(module, *offset, id == f.build_ids.end() ? "" : id->second);
      return sym ? common::to_valid_utf8(sym->name) : std::string("??");
    };
    names.push_back(name_of(f.module.value_or(""), f.module_offset));
    for (const auto& fr : f.frames) {
      names.push_back(name_of(fr.module, fr.module_offset));
    }
    out["legacy_frames"] = std::move(names);
  }
  if (unwind) {
    const auto start = std::chrono::steady_clock::now();
    common::UnwindOptions options;
    options.deadline = start + std::chrono::seconds(10);
    options.debug_dirs.insert(options.debug_dirs.begin(), debug_dirs.begin(), debug_dirs.end());
    common::CrashAnalysis analysis;
    if (sandboxed) {
      const common::AnalysisFiles files = common::open_analysis_files(f, options);
      options.files = &files;
      sandbox::ChildLimits limits;
      const std::vector<int> keep = files.fds();
      limits.files += keep.size();
      const auto child = sandbox::run_in_child(
          [&] {
            return common::analysis_to_wire(common::analyze_crash(f, options), limits.max_output);
          },
          keep, limits, options.deadline + std::chrono::seconds(1));
      common::Expected<common::WireAnalysis> wire = common::fail(child.failure);
      if (child.output) {
        wire = common::analysis_from_wire(*child.output, limits.max_output);
      }
      if (!wire) {
        std::cerr << "scan_core: analysis failed: " << wire.error().message << "\n";
        return 1;
      }
      analysis = std::move(wire->analysis);
    } else {
      analysis = common::analyze_crash(f, options);
    }
    out["crash"] = common::crash_to_json(f, analysis);
    out["analysis_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  } else {
    // The facts and the resolved crash symbol, with the scanner's best-effort frames that
    // schema-1 records showed (what the tests of the scanner check).
    common::CrashAnalysis resolved;
    resolved.symbol = symbol;
    out["crash"] = common::crash_to_json(f, resolved);
    nlohmann::json frames = nlohmann::json::array();
    for (const auto& fr : f.frames) {
      frames.push_back(
          {{"address", common::hex_u64(fr.address)},
           {"module", fr.module.empty() ? nlohmann::json(nullptr)
                                        : nlohmann::json(common::to_valid_utf8(fr.module))},
           {"offset", fr.module_offset ? nlohmann::json(common::hex_u64(*fr.module_offset))
                                       : nlohmann::json(nullptr)},
           {"best_effort", true}});
    }
    out["crash"]["frames"] = std::move(frames);
  }
  out["mappings"] = common::mappings_to_json(f, findings);
  out["facts"] = extra_facts(f);
  std::cout << out.dump(2) << "\n";
  return 0;
}
