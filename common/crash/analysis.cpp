#include "common/crash/analysis.hpp"

#include <algorithm>

namespace common {

std::string executable_mapping(const CoreFacts& f) {
  if (!f.at_entry) {
    return {};
  }
  for (const auto& m : f.files) {
    if (*f.at_entry >= m.start && *f.at_entry < m.end) {
      return m.path;
    }
  }
  return {};
}

CrashAnalysis analyze_crash(const CoreFacts& f, const UnwindOptions& options) {
  CrashAnalysis a;
  if (!f.is_elf) {
    return a;
  }
  a.stacks = unwind_threads(f, options);
  const Frame* top =
      !a.stacks.empty() && !a.stacks[0].frames.empty() ? &a.stacks[0].frames[0] : nullptr;
  if (top != nullptr && top->symbol) {
    a.symbol = top->symbol;
  } else if (f.module && f.module_offset && std::chrono::steady_clock::now() < options.deadline) {
    if (options.files == nullptr) {
      a.symbol =
          resolve_symbol(*f.module, *f.module_offset, f.build_id.value_or(""), options.root_fd);
    } else if (const auto it = options.files->modules.find(*f.module);
               it != options.files->modules.end()) {
      a.symbol = resolve_symbol_fd(it->second.get(), *f.module_offset, f.build_id.value_or(""));
    }
  }
  const std::optional<int> signo = f.si_signo ? f.si_signo : f.cursig;
  if (!a.stacks.empty() && signo) {
    const std::string exe = executable_mapping(f);
    std::string exe_id;
    if (!exe.empty()) {
      const auto id = f.build_ids.find(exe);
      exe_id = id != f.build_ids.end() ? "b:" + id->second : "n:" + module_basename(exe);
    }
    a.signature = signature_v2(*signo, a.stacks[0].frames, exe, exe_id);
    // Nothing named and no module known: v1 (signal, si_code, site) says more than "?".
    if (a.signature &&
        std::ranges::all_of(a.signature->chain, [](const std::string& c) { return c == "?"; })) {
      a.signature.reset();
    }
  }
  return a;
}

} // namespace common
