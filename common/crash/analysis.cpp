#include "common/crash/analysis.hpp"

#include "common/crash/perf_map.hpp"

#include <algorithm>
#include <csignal>

namespace common {

namespace {

// The address a frame's code is looked up at: the pc itself for the context frame and frames
// a signal interrupted, else the call instruction before the return address.
uint64_t lookup_address(const Frame& f) {
  return f.trust == FrameTrust::context || f.exact_pc || f.pc == 0 ? f.pc : f.pc - 1;
}

// Frames in JIT code named from the process's perf map, as perf names them: the name is the
// JIT's, so it is not "verified" and has no offset into a symbol of a file.
void name_jit_frames(std::vector<ThreadTrace>& stacks, std::string_view perf_map,
                     std::chrono::steady_clock::time_point deadline) {
  if (perf_map.empty()) {
    return;
  }
  std::vector<uint64_t> addresses;
  for (const auto& t : stacks) {
    for (const auto& f : t.frames) {
      if (f.jit && !f.symbol) {
        addresses.push_back(lookup_address(f));
      }
    }
  }
  if (addresses.empty()) {
    return;
  }
  const auto names = perf_map_names(perf_map, addresses, deadline);
  for (auto& t : stacks) {
    for (auto& f : t.frames) {
      if (!f.jit || f.symbol) {
        continue;
      }
      const uint64_t at = lookup_address(f);
      if (const auto it = names.find(at); it != names.end()) {
        f.symbol = ResolvedSymbol{it->second.name, at - it->second.start + (f.pc - at), false};
      }
    }
  }
}

} // namespace

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

std::optional<OriginalFault> original_fault(const CoreFacts& f,
                                            std::span<const ThreadTrace> stacks) {
  if (!f.si_code || (*f.si_code != SI_USER && *f.si_code != SI_TKILL) || !f.sender_pid || !f.pid ||
      *f.sender_pid != *f.pid || f.thread_states.empty()) {
    return std::nullopt;
  }
  const auto is_fault = [](const SignalFrame& s) { return signal_frame_fault(s).has_value(); };
  const auto& frames = f.thread_states[0].signal_frames;
  const SignalFrame* chosen = nullptr;
  std::optional<size_t> at;
  // The innermost signal frame the unwinder went through whose siginfo is a fault: the frame
  // after the trampoline is where it interrupted the thread.
  if (!stacks.empty()) {
    const auto& trace = stacks[0].frames;
    for (size_t i = 0; i + 1 < trace.size() && chosen == nullptr; ++i) {
      if (!trace[i].signal_frame || trace[i + 1].signal_frame) {
        continue;
      }
      for (const auto& s : frames) {
        if (s.pc == trace[i + 1].pc && is_fault(s)) {
          chosen = &s;
          at = i + 1;
          break;
        }
      }
    }
  }
  if (chosen == nullptr) {
    const auto it = std::ranges::find_if(frames, is_fault);
    if (it == frames.end()) {
      return std::nullopt;
    }
    chosen = &*it;
  }
  const SigInfo fault = *signal_frame_fault(*chosen);
  OriginalFault o;
  o.signo = fault.signo;
  o.code = fault.code;
  o.code_name = std::string(si_code_name(o.signo, o.code));
  o.address = fault.fault_address;
  o.pc = chosen->pc;
  o.frame = at;
  if (at) {
    o.symbol = stacks[0].frames[*at].symbol;
  }
  return o;
}

CrashAnalysis analyze_crash(const CoreFacts& f, const UnwindOptions& options) {
  CrashAnalysis a;
  if (!f.is_elf) {
    return a;
  }
  a.stacks = unwind_threads(f, options);
  name_jit_frames(a.stacks, options.perf_map, options.deadline);
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
    // A crash handler that killed the process after a fault: the signature is the fault's,
    // from the frame it interrupted on, as if there had been no handler.
    std::span<const Frame> frames = a.stacks[0].frames;
    int sig = *signo;
    if (const auto o = original_fault(f, a.stacks); o && o->frame) {
      frames = frames.subspan(*o->frame);
      sig = o->signo;
    }
    a.signature = signature_v2(sig, frames, exe, exe_id);
    // Nothing named and no module known: v1 (signal, si_code, site) says more than "?".
    if (a.signature &&
        std::ranges::all_of(a.signature->chain, [](const std::string& c) { return c == "?"; })) {
      a.signature.reset();
    }
  }
  return a;
}

} // namespace common
