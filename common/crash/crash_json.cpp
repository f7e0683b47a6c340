#include "common/crash/crash_json.hpp"

#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/signals.hpp"
#include "common/crash/sigframe.hpp"
#include "common/record/crash.hpp"
#include "common/record/mapping.hpp"

#include <map>
#include <set>
#include <string_view>

namespace common {

namespace {

constexpr size_t k_max_mappings = 1024;

// Empty text is unknown (null), as every string of the section.
std::optional<std::string> text(std::string_view s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

std::optional<std::string> hex(const std::optional<uint64_t>& v) {
  return v ? std::optional<std::string>(hex_u64(*v)) : std::nullopt;
}

template <typename T>
std::optional<int64_t> integer(const std::optional<T>& v) {
  return v ? std::optional<int64_t>(static_cast<int64_t>(*v)) : std::nullopt;
}

// The one mapping of a symbol: crash.symbol, original_fault.symbol and every frame's.
std::optional<record::Symbol> symbol_of(const std::optional<ResolvedSymbol>& symbol) {
  if (!symbol) {
    return std::nullopt;
  }
  record::Symbol s;
  s.name = symbol->name;
  s.offset = hex_u64(symbol->offset);
  s.verified = symbol->verified;
  return s;
}

record::Frame frame_of(const Frame& f) {
  record::Frame out;
  out.pc = hex_u64(f.pc);
  out.trust = std::string(to_string(f.trust));
  out.module = text(f.module);
  out.module_offset = hex(f.module_offset);
  out.build_id = text(f.build_id);
  out.symbol = symbol_of(f.symbol);
  if (f.source) {
    out.file = text(f.source->file);
    out.line = f.source->line;
  }
  out.inlined = f.inlined;
  out.signal_frame = f.signal_frame;
  out.jit = f.jit;
  return out;
}

record::Thread thread_of(const ThreadTrace& t) {
  record::Thread out;
  out.tid = t.tid;
  out.name = text(t.name);
  out.state = text(t.state);
  out.crashing = t.crashing;
  for (const auto& f : t.frames) {
    out.frames.push_back(frame_of(f));
  }
  out.error = text(t.error);
  return out;
}

// The crash site: signal, fault, registers, the module at pc.
void add_site(record::Crash& c, const CoreFacts& f) {
  c.machine = text(f.machine);
  c.si_signo = integer(f.si_signo);
  c.si_code = integer(f.si_code);
  c.si_code_name = text(f.si_code_name);
  c.si_errno = integer(f.si_errno);
  c.fault_address = hex(f.fault_address);
  c.sender_pid = integer(f.sender_pid);
  c.sender_uid = integer(f.sender_uid);
  if (f.syscall) {
    const std::string_view arch = f.syscall_arch ? audit_arch_name(*f.syscall_arch) : "";
    // Names from the x86-64 table only where the call was made through it.
    const bool x86_64 = arch == "x86_64";
    record::BlockedSyscall b;
    b.number = static_cast<int64_t>(*f.syscall);
    b.name = text(x86_64 ? x86_64_syscall_name(*f.syscall) : "");
    if (f.syscall_arch) {
      b.arch = arch.empty() ? hex_u64(*f.syscall_arch) : std::string(arch);
    }
    c.blocked_syscall = std::move(b);
  }
  c.pc = hex(f.pc);
  c.sp = hex(f.sp);
  c.tid = integer(f.tid);
  c.threads = static_cast<int64_t>(f.threads);
  c.module = f.module ? text(*f.module) : std::nullopt;
  c.module_offset = hex(f.module_offset);
  c.build_id = f.build_id ? text(*f.build_id) : std::nullopt;
}

} // namespace

record::Crash crash_record(const CoreFacts& f, const CrashAnalysis& a) {
  record::Crash c;
  // A section written now has every key of schema 2 and not schema 1's `frames`.
  c.unknown.absent = {"frames"};
  add_site(c, f);
  c.symbol = symbol_of(a.symbol);
  if (const auto o = original_fault(f, a.stacks)) {
    record::OriginalFault out;
    out.si_signo = o->signo;
    out.signal_name = std::string(signal_name(o->signo));
    out.si_code = o->code;
    out.si_code_name = text(o->code_name);
    out.fault_address = hex(o->address);
    out.pc = hex_u64(o->pc);
    out.symbol = symbol_of(o->symbol);
    c.original_fault = std::move(out);
  }
  if (!a.stacks.empty() && a.stacks[0].goroutine) {
    const GoroutineTrace& g = *a.stacks[0].goroutine;
    record::Goroutine out;
    if (g.g != 0) {
      out.g = hex_u64(g.g);
      out.goid = g.goid;
    }
    out.layout = text(g.layout);
    if (g.first_frame) {
      out.first_frame = static_cast<int64_t>(*g.first_frame);
    }
    out.error = text(g.error);
    c.goroutine = std::move(out);
  }
  if (a.signature) {
    c.signature = a.signature->signature;
    c.signature_version = a.signature->version;
    // One string, so that list views (which read only scalar fields) can show it; "←" cannot
    // occur in a symbol name or in build-id+offset.
    std::string chain;
    for (const auto& link : a.signature->chain) {
      chain += (chain.empty() ? "" : " ← ") + to_valid_utf8(link);
    }
    c.signature_chain = std::move(chain);
    if (!a.signature->refines.empty()) {
      c.signature_refines = a.signature->refines;
    }
  } else {
    c.signature = text(f.signature);
    c.signature_version = f.signature.empty() ? std::nullopt : std::optional<int64_t>(1);
  }
  for (const auto& t : a.stacks) {
    c.stacks.push_back(thread_of(t));
  }
  // How much of the core was seen, and what parsing noticed.
  c.expected_size = f.expected_size > 0 ? std::optional<uint64_t>(f.expected_size) : std::nullopt;
  c.received = f.received;
  c.truncated = f.truncated;
  c.format_error = text(f.format_error);
  c.warnings = f.warnings;
  return c;
}

nlohmann::json crash_to_json(const CoreFacts& f, const CrashAnalysis& a) {
  return record::to_json(crash_record(f, a));
}

std::string crash_cause_detail(const nlohmann::json& crash) {
  return record::cause_detail(record::crash_from_json(crash));
}

record::Mappings mapping_records(const CoreFacts& f, std::span<const MappingFinding> findings) {
  record::Mappings out;
  std::set<std::string_view> seen;
  // Each path's first loaded module, found in one pass (NT_FILE may list a million mappings).
  std::map<std::string_view, const ModuleGroup*> loaded_of;
  for (const auto& g : f.modules) {
    if (g.loaded) {
      loaded_of.try_emplace(g.path, &g);
    }
  }
  for (const auto& m : f.files) {
    if (out.entries.size() >= k_max_mappings) {
      break;
    }
    if (!seen.insert(m.path).second) {
      continue;
    }
    // The file's loaded image (its first one, for a file dlmopen loaded twice) rather than its
    // lowest mapping, which may be a copy mapped only to be read.
    const auto it = loaded_of.find(m.path);
    const ModuleGroup* loaded = it != loaded_of.end() ? it->second : nullptr;
    record::Mapping entry;
    entry.path = m.path;
    entry.start = hex_u64(loaded != nullptr ? loaded->start : m.start);
    if (const auto id = f.build_ids.find(m.path); id != f.build_ids.end()) {
      entry.build_id = id->second;
    }
    const ModuleMatch match = loaded != nullptr ? loaded->match() : ModuleMatch::none;
    if (match != ModuleMatch::none) {
      entry.match = std::string(to_string(match));
    }
    for (const auto& x : findings) {
      if (x.path == m.path) {
        entry.findings.push_back({std::string(to_string(x.kind)), x.detail, {}});
      }
    }
    out.entries.push_back(std::move(entry));
  }
  return out;
}

nlohmann::json mappings_to_json(const CoreFacts& f, std::span<const MappingFinding> findings) {
  return record::to_json(mapping_records(f, findings));
}

} // namespace common
