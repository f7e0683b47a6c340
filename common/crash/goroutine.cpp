#include "common/crash/goroutine.hpp"

#include <dwarf.h>
#include <elfutils/libdw.h>

#include <array>
#include <cstring>
#include <map>
#include <string_view>

namespace common {

namespace {

// A structure type's members: name → (offset, type entry).
struct Members {
  uint64_t size = 0;
  std::map<std::string, std::pair<uint64_t, Dwarf_Die>, std::less<>> fields;
};

constexpr size_t k_max_members = 512;

std::optional<Members> members_of(Dwarf_Die* type) {
  Members out;
  Dwarf_Attribute space;
  Dwarf_Word size = 0;
  if (dwarf_formudata(dwarf_attr(type, DW_AT_byte_size, &space), &size) != 0) {
    return std::nullopt;
  }
  out.size = size;
  Dwarf_Die child;
  if (dwarf_child(type, &child) != 0) {
    return out;
  }
  size_t n = 0;
  do {
    if (dwarf_tag(&child) != DW_TAG_member || ++n > k_max_members) {
      continue;
    }
    const char* name = dwarf_diename(&child);
    Dwarf_Word offset = 0;
    Dwarf_Attribute loc;
    Dwarf_Die member_type;
    // Go writes DW_AT_data_member_location as a constant.
    if (name == nullptr ||
        dwarf_formudata(dwarf_attr(&child, DW_AT_data_member_location, &loc), &offset) != 0 ||
        dwarf_formref_die(dwarf_attr(&child, DW_AT_type, &space), &member_type) == nullptr) {
      continue;
    }
    out.fields.emplace(std::string(name, strnlen(name, 256)),
                       std::pair<uint64_t, Dwarf_Die>(offset, member_type));
  } while (dwarf_siblingof(&child, &child) == 0);
  return out;
}

} // namespace

GoLayoutResult go_layout(Dwarf* dwarf, std::chrono::steady_clock::time_point deadline,
                         size_t max_entries) {
  GoLayoutResult r;
  if (dwarf == nullptr) {
    r.error = "no DWARF in the executable";
    return r;
  }
  // The structure types by name, from the top level of every unit (Go's linker puts all types
  // in the runtime's unit; other producers nest them, and are not Go).
  static constexpr std::array<std::string_view, 4> k_types = {"runtime.g", "runtime.m",
                                                              "runtime.gobuf", "runtime.stack"};
  std::map<std::string_view, Dwarf_Die> types;
  Dwarf_Off offset = 0;
  Dwarf_Off next = 0;
  size_t header = 0;
  size_t entries = 0;
  while (types.size() < k_types.size() &&
         dwarf_nextcu(dwarf, offset, &next, &header, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu;
    Dwarf_Die die;
    if (dwarf_offdie(dwarf, offset + header, &cu) != nullptr && dwarf_child(&cu, &die) == 0) {
      do {
        if (++entries > max_entries || std::chrono::steady_clock::now() >= deadline) {
          r.error = "runtime.g not found within the DWARF budget";
          return r;
        }
        if (dwarf_tag(&die) != DW_TAG_structure_type) {
          continue;
        }
        const char* name = dwarf_diename(&die);
        const std::string_view n = name != nullptr ? std::string_view(name, strnlen(name, 64)) : "";
        for (const auto t : k_types) {
          if (n == t && !types.contains(t)) {
            types.emplace(t, die);
          }
        }
      } while (types.size() < k_types.size() && dwarf_siblingof(&die, &die) == 0);
    }
    offset = next;
  }
  for (const auto t : k_types) {
    if (!types.contains(t)) {
      r.error = "no type " + std::string(t) + " in the executable's DWARF";
      return r;
    }
  }
  auto g = members_of(&types["runtime.g"]);
  auto m = members_of(&types["runtime.m"]);
  auto gobuf = members_of(&types["runtime.gobuf"]);
  auto stack = members_of(&types["runtime.stack"]);
  if (!g || !m || !gobuf || !stack) {
    r.error = "a runtime type without a size in the executable's DWARF";
    return r;
  }
  std::string missing;
  const auto at = [&](const Members& s, std::string_view type, std::string_view field) {
    const auto it = s.fields.find(field);
    if (it == s.fields.end()) {
      if (missing.empty()) {
        missing = std::string(type) + " has no field " + std::string(field);
      }
      return uint64_t{0};
    }
    return it->second.first;
  };
  GoLayout l;
  l.g_size = g->size;
  l.m_size = m->size;
  const uint64_t st = at(*g, "runtime.g", "stack");
  l.g_stack_lo = st + at(*stack, "runtime.stack", "lo");
  l.g_stack_hi = st + at(*stack, "runtime.stack", "hi");
  l.g_m = at(*g, "runtime.g", "m");
  const uint64_t sched = at(*g, "runtime.g", "sched");
  l.g_sched_sp = sched + at(*gobuf, "runtime.gobuf", "sp");
  l.g_sched_pc = sched + at(*gobuf, "runtime.gobuf", "pc");
  l.g_sched_bp = sched + at(*gobuf, "runtime.gobuf", "bp");
  l.g_panic = at(*g, "runtime.g", "_panic");
  l.g_goid = at(*g, "runtime.g", "goid");
  l.g_sig = at(*g, "runtime.g", "sig");
  l.g_sigcode0 = at(*g, "runtime.g", "sigcode0");
  l.g_sigcode1 = at(*g, "runtime.g", "sigcode1");
  l.g_sigpc = at(*g, "runtime.g", "sigpc");
  l.m_g0 = at(*m, "runtime.m", "g0");
  l.m_gsignal = at(*m, "runtime.m", "gsignal");
  l.m_curg = at(*m, "runtime.m", "curg");
  if (!missing.empty()) {
    r.error = std::move(missing);
    return r;
  }
  // Every word read must lie inside its structure (a hostile DWARF's offsets are not ours).
  for (const uint64_t off :
       {l.g_stack_lo, l.g_stack_hi, l.g_m, l.g_sched_sp, l.g_sched_pc, l.g_sched_bp, l.g_panic,
        l.g_goid, l.g_sig, l.g_sigcode0, l.g_sigcode1, l.g_sigpc}) {
    if (off > l.g_size || l.g_size - off < 8) {
      r.error = "runtime.g's fields lie outside its size";
      return r;
    }
  }
  for (const uint64_t off : {l.m_g0, l.m_gsignal, l.m_curg}) {
    if (off > l.m_size || l.m_size - off < 8) {
      r.error = "runtime.m's fields lie outside its size";
      return r;
    }
  }
  r.layout = l;
  return r;
}

std::optional<Goroutine> read_goroutine(const GoLayout& l, const WordReader& read, uint64_t fs_base,
                                        const GoRegisters& thread,
                                        std::span<const SignalFrame> signal_frames) {
  if (fs_base < 8) {
    return std::nullopt;
  }
  const auto field = [&](uint64_t base, uint64_t off) -> std::optional<uint64_t> {
    return base > UINT64_MAX - off - 8 ? std::nullopt : read(base + off);
  };
  const auto current = read(fs_base - 8);
  if (!current) {
    return std::nullopt;
  }
  Goroutine out;
  if (*current == 0 || *current % 8 != 0) {
    out.error = "no goroutine in the thread's TLS slot";
    return out;
  }
  uint64_t g = *current;
  // The signal handler's and the scheduler's goroutines stand for the one the m runs.
  if (const auto m = field(g, l.g_m); m && *m != 0) {
    const auto g0 = field(*m, l.m_g0);
    const auto gsignal = field(*m, l.m_gsignal);
    const auto curg = field(*m, l.m_curg);
    if ((g0 && *g0 == g) || (gsignal && *gsignal == g)) {
      if (!curg || *curg == 0 || *curg % 8 != 0) {
        out.g = g;
        out.error = curg ? "the thread runs no goroutine (m.curg is nil)"
                         : "m.curg is not in the memory the core kept";
        return out;
      }
      g = *curg;
      out.from_curg = true;
    }
  }
  out.g = g;
  const auto lo = field(g, l.g_stack_lo);
  const auto hi = field(g, l.g_stack_hi);
  const auto goid = field(g, l.g_goid);
  const auto sig = field(g, l.g_sig);
  const auto code0 = field(g, l.g_sigcode0);
  const auto code1 = field(g, l.g_sigcode1);
  const auto sigpc = field(g, l.g_sigpc);
  const auto panic = field(g, l.g_panic);
  if (!lo || !hi || !goid || !sig || !code0 || !code1 || !sigpc || !panic) {
    out.error = "the goroutine is not in the memory the core kept";
    return out;
  }
  out.goid = static_cast<int64_t>(*goid);
  out.stack_lo = *lo;
  out.stack_hi = *hi;
  out.sig = static_cast<uint32_t>(*sig & 0xffffffffu);
  out.sigcode0 = *code0;
  out.sigcode1 = *code1;
  out.sigpc = *sigpc;
  out.panicking = *panic != 0;
  if (*lo >= *hi) {
    out.error = "the goroutine's stack bounds are not ordered";
    return out;
  }
  const auto on_stack = [&](uint64_t sp) { return sp >= *lo && sp < *hi; };
  if (on_stack(thread.sp)) {
    out.start = thread;
    return out;
  }
  for (const SignalFrame& f : signal_frames) {
    if (on_stack(f.sp)) {
      out.start = GoRegisters{f.pc, f.sp, f.bp};
      return out;
    }
  }
  const auto sp = field(g, l.g_sched_sp);
  const auto pc = field(g, l.g_sched_pc);
  const auto bp = field(g, l.g_sched_bp);
  if (sp && pc && bp && on_stack(*sp)) {
    out.start = GoRegisters{*pc, *sp, *bp};
    return out;
  }
  out.error = "no saved registers on the goroutine's stack";
  return out;
}

} // namespace common
