#include "common/crash/crash_json.hpp"

#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/signals.hpp"
#include "common/crash/sigframe.hpp"

#include <map>
#include <set>
#include <string_view>

namespace common {

namespace {

constexpr size_t k_max_mappings = 1024;

template <typename T>
nlohmann::json opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json hex(const std::optional<uint64_t>& v) {
  return v ? nlohmann::json(hex_u64(*v)) : nlohmann::json(nullptr);
}

nlohmann::json text(std::string_view s) {
  return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(to_valid_utf8(s));
}

nlohmann::json text_opt(const std::optional<std::string>& s) {
  return s ? text(std::string_view(*s)) : nlohmann::json(nullptr);
}

// The one JSON mapping of a symbol: {"name", "offset", "verified"} (crash.symbol and every
// frame's symbol), or null.
nlohmann::json symbol_to_json(const std::optional<ResolvedSymbol>& symbol) {
  if (!symbol) {
    return nullptr;
  }
  return {{"name", to_valid_utf8(symbol->name)},
          {"offset", hex_u64(symbol->offset)},
          {"verified", symbol->verified}};
}

// One frame: {"pc", "trust", "module", "module_offset", "build_id", "symbol", "file", "line",
// "inlined", "signal_frame"}.
nlohmann::json frame_to_json(const Frame& f) {
  return {{"pc", hex_u64(f.pc)},
          {"trust", std::string(to_string(f.trust))},
          {"module", text(f.module)},
          {"module_offset", hex(f.module_offset)},
          {"build_id", text(f.build_id)},
          {"symbol", symbol_to_json(f.symbol)},
          {"file", f.source ? text(f.source->file) : nlohmann::json(nullptr)},
          {"line", f.source ? nlohmann::json(f.source->line) : nlohmann::json(nullptr)},
          {"inlined", f.inlined},
          {"signal_frame", f.signal_frame}};
}

// One thread: {"tid", "name", "state", "crashing", "frames", "error"}.
nlohmann::json thread_to_json(const ThreadTrace& t) {
  nlohmann::json frames = nlohmann::json::array();
  for (const auto& f : t.frames) {
    frames.push_back(frame_to_json(f));
  }
  return {{"tid", t.tid},           {"name", text(t.name)},        {"state", text(t.state)},
          {"crashing", t.crashing}, {"frames", std::move(frames)}, {"error", text(t.error)}};
}

// The crash site: signal, fault, registers, the module at pc.
nlohmann::json site_to_json(const CoreFacts& f) {
  nlohmann::json j = nlohmann::json::object();
  j["machine"] = text(f.machine);
  j["si_signo"] = opt(f.si_signo);
  j["si_code"] = opt(f.si_code);
  j["si_code_name"] = text(f.si_code_name);
  j["si_errno"] = opt(f.si_errno);
  j["fault_address"] = hex(f.fault_address);
  j["sender_pid"] = opt(f.sender_pid);
  j["sender_uid"] = opt(f.sender_uid);
  j["blocked_syscall"] = nullptr;
  if (f.syscall) {
    const std::string_view arch = f.syscall_arch ? audit_arch_name(*f.syscall_arch) : "";
    // Names from the x86-64 table only where the call was made through it.
    const bool x86_64 = arch == "x86_64";
    const std::string_view name = x86_64 ? x86_64_syscall_name(*f.syscall) : "";
    j["blocked_syscall"] = {{"number", *f.syscall},
                            {"name", text(name)},
                            {"arch", f.syscall_arch
                                         ? (arch.empty() ? nlohmann::json(hex_u64(*f.syscall_arch))
                                                         : nlohmann::json(arch))
                                         : nlohmann::json(nullptr)}};
  }
  j["pc"] = hex(f.pc);
  j["sp"] = hex(f.sp);
  j["tid"] = opt(f.tid);
  j["threads"] = f.threads;
  j["module"] = text_opt(f.module);
  j["module_offset"] = hex(f.module_offset);
  j["build_id"] = text_opt(f.build_id);
  return j;
}

// The closing fields: how much of the core was seen, and what parsing noticed.
void add_stream_fields(nlohmann::json& j, const CoreFacts& f) {
  j["expected_size"] = f.expected_size > 0 ? nlohmann::json(f.expected_size) : nullptr;
  j["received"] = f.received;
  j["truncated"] = f.truncated;
  j["format_error"] = text(f.format_error);
  nlohmann::json warnings = nlohmann::json::array();
  for (const auto& w : f.warnings) {
    warnings.push_back(to_valid_utf8(w));
  }
  j["warnings"] = std::move(warnings);
}

} // namespace

nlohmann::json crash_to_json(const CoreFacts& f, const CrashAnalysis& a) {
  nlohmann::json j = site_to_json(f);
  j["symbol"] = symbol_to_json(a.symbol);
  j["original_fault"] = nullptr;
  if (const auto o = original_fault(f, a.stacks)) {
    j["original_fault"] = {{"si_signo", o->signo},
                           {"signal_name", signal_name(o->signo)},
                           {"si_code", o->code},
                           {"si_code_name", text(o->code_name)},
                           {"fault_address", hex(o->address)},
                           {"pc", hex_u64(o->pc)},
                           {"symbol", symbol_to_json(o->symbol)}};
  }
  if (a.signature) {
    j["signature"] = a.signature->signature;
    j["signature_version"] = a.signature->version;
    // One string, so that list views (which read only scalar fields) can show it; "←" cannot
    // occur in a symbol name or in build-id+offset.
    std::string chain;
    for (const auto& c : a.signature->chain) {
      chain += (chain.empty() ? "" : " ← ") + to_valid_utf8(c);
    }
    j["signature_chain"] = std::move(chain);
  } else {
    j["signature"] = text(f.signature);
    j["signature_version"] = f.signature.empty() ? nlohmann::json(nullptr) : nlohmann::json(1);
    j["signature_chain"] = nullptr;
  }
  nlohmann::json stacks = nlohmann::json::array();
  for (const auto& t : a.stacks) {
    stacks.push_back(thread_to_json(t));
  }
  j["stacks"] = std::move(stacks);
  add_stream_fields(j, f);
  return j;
}

std::string crash_cause_detail(const nlohmann::json& crash) {
  const auto str = [](const nlohmann::json& o, const char* key) -> std::string {
    const auto it = o.find(key);
    return it != o.end() && it->is_string() ? to_valid_utf8(it->get<std::string>()) : "";
  };
  if (!crash.is_object()) {
    return {};
  }
  if (const auto o = crash.find("original_fault"); o != crash.end() && o->is_object()) {
    const std::string name = str(*o, "signal_name");
    std::string out = " raised by the program's crash handler after " +
                      (name.empty() ? std::string("a fault") : "SIG" + name);
    if (const std::string code = str(*o, "si_code_name"); !code.empty()) {
      out += " (" + code + ")";
    }
    if (const std::string addr = str(*o, "fault_address"); !addr.empty()) {
      out += " at " + addr;
    }
    const auto sym = o->find("symbol");
    const std::string fn = sym != o->end() && sym->is_object() ? str(*sym, "name") : "";
    if (!fn.empty()) {
      out += " in " + fn;
    } else if (const std::string pc = str(*o, "pc"); !pc.empty()) {
      out += " in " + pc;
    }
    return out;
  }
  if (const auto s = crash.find("blocked_syscall"); s != crash.end() && s->is_object()) {
    const auto n = s->find("number");
    if (n == s->end() || !n->is_number_integer()) {
      return {};
    }
    const std::string name = str(*s, "name");
    const std::string number = std::to_string(n->get<int64_t>());
    std::string out = " (seccomp blocked " +
                      (name.empty() ? "system call " + number : name + " (" + number + ")");
    if (const std::string arch = str(*s, "arch"); !arch.empty()) {
      out += " on " + arch;
    }
    return out + ")";
  }
  return {};
}

nlohmann::json mappings_to_json(const CoreFacts& f, std::span<const MappingFinding> findings) {
  nlohmann::json out = nlohmann::json::array();
  std::set<std::string_view> seen;
  // Each path's first loaded module, found in one pass (NT_FILE may list a million mappings).
  std::map<std::string_view, const ModuleGroup*> loaded_of;
  for (const auto& g : f.modules) {
    if (g.loaded) {
      loaded_of.try_emplace(g.path, &g);
    }
  }
  for (const auto& m : f.files) {
    if (out.size() >= k_max_mappings) {
      break;
    }
    if (!seen.insert(m.path).second) {
      continue;
    }
    // The file's loaded image (its first one, for a file dlmopen loaded twice) rather than its
    // lowest mapping, which may be a copy mapped only to be read.
    const auto it = loaded_of.find(m.path);
    const ModuleGroup* loaded = it != loaded_of.end() ? it->second : nullptr;
    const uint64_t start = loaded != nullptr ? loaded->start : m.start;
    nlohmann::json entry = {{"path", to_valid_utf8(m.path)}, {"start", hex_u64(start)}};
    const auto id = f.build_ids.find(m.path);
    entry["build_id"] = id != f.build_ids.end() ? nlohmann::json(id->second) : nullptr;
    const ModuleMatch match = loaded != nullptr ? loaded->match() : ModuleMatch::none;
    entry["match"] = match == ModuleMatch::none ? nlohmann::json(nullptr)
                                                : nlohmann::json(std::string(to_string(match)));
    nlohmann::json list = nlohmann::json::array();
    for (const auto& x : findings) {
      if (x.path == m.path) {
        list.push_back({{"kind", to_string(x.kind)}, {"detail", to_valid_utf8(x.detail)}});
      }
    }
    entry["findings"] = std::move(list);
    out.push_back(std::move(entry));
  }
  return out;
}

} // namespace common
