#include "common/crash/elf_core.hpp"

#include "common/base/bytes.hpp"
#include "common/base/hex.hpp"
#include "common/base/path.hpp"
#include "common/base/sha256.hpp"
#include "common/crash/elf_struct.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

namespace common {

namespace {

constexpr uint64_t k_max = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k_ehdr_size = sizeof(Elf64_Ehdr);
constexpr uint64_t k_phdr_size = sizeof(Elf64_Phdr);
constexpr uint64_t k_shdr_size = sizeof(Elf64_Shdr);
// The kernel needs PN_XNUM past 65535 mappings; vm.max_map_count defaults to 65530, and a
// million program headers (40 MB of summaries) is far past any real process.
constexpr uint64_t k_max_phdrs = uint64_t{1} << 20;
// NT_FILE is at most 4 MiB by default (16 MiB with kernel.core_file_note_size_limit).
constexpr uint64_t k_max_note_desc = 16u << 20;
constexpr uint64_t k_max_note_segments = 16;
// The kernel dumps one page of each ELF file mapping at offset 0 (coredump_filter bit 4);
// 64 KiB covers 64 KiB pages on aarch64.
constexpr uint64_t k_build_id_window = 64u << 10;
constexpr uint64_t k_max_build_id_windows = 4096;
// Stack windows: enough for the frames of typical code at the crash (the unwinder stops where a
// window ends), bounded whatever the thread count.
constexpr uint64_t k_stack_window = 256u << 10;
constexpr uint64_t k_thread_stack_window = 64u << 10;
constexpr uint64_t k_max_stack_bytes = 4u << 20;
// Of those, kept for the crashing thread's windows at the stack a signal interrupted (one
// decided only once its signal frame has streamed past, after every other window; one guessed
// when the notes end, see keep_unclaimed_stack).
constexpr uint64_t k_interrupted_reserve = 2 * k_stack_window;
constexpr size_t k_max_threads = 64;
constexpr size_t k_max_frames = 32;
// Capture windows alive at once; only overlapping (hostile) windows can come near it.
constexpr uint64_t k_max_buffered = 32u << 20;
constexpr size_t k_max_warnings = 16;

uint64_t sat_add(uint64_t a, uint64_t b) {
  return b > k_max - a ? k_max : a + b;
}

std::string machine_name(uint16_t m) {
  switch (m) {
  case EM_X86_64:
    return "x86_64";
  case EM_AARCH64:
    return "aarch64";
  default:
    return "EM_" + std::to_string(m);
  }
}

} // namespace

std::string_view to_string(ModuleMatch match) {
  switch (match) {
  case ModuleMatch::build_id:
    return "build-id";
  case ModuleMatch::go_build_id:
    return "go-build-id";
  case ModuleMatch::elf_headers:
    return "elf-headers";
  case ModuleMatch::none:
    break;
  }
  return "";
}

ModuleMatch ModuleGroup::match() const {
  if (!build_id.empty()) {
    return ModuleMatch::build_id;
  }
  if (!go_build_id.empty()) {
    return ModuleMatch::go_build_id;
  }
  // The ELF header and program headers at least (64 + 56 bytes): less identifies nothing.
  if (!page_digest.empty() && page_bytes >= sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr)) {
    return ModuleMatch::elf_headers;
  }
  return ModuleMatch::none;
}

const FileMapping* mapping_at(const CoreFacts& facts, uint64_t addr, const ModuleGroup** group) {
  if (group != nullptr) {
    *group = nullptr;
  }
  const auto& files = facts.files;
  auto it = std::upper_bound(files.begin(), files.end(), addr,
                             [](uint64_t a, const FileMapping& m) { return a < m.start; });
  if (it == files.begin()) {
    return nullptr;
  }
  --it;
  if (addr >= it->end) {
    return nullptr;
  }
  const auto i = static_cast<size_t>(it - files.begin());
  if (group != nullptr && i < facts.file_groups.size() &&
      facts.file_groups[i] < facts.modules.size()) {
    *group = &facts.modules[facts.file_groups[i]];
  }
  return &*it;
}

const ModuleGroup* module_at(const CoreFacts& facts, uint64_t addr) {
  const ModuleGroup* g = nullptr;
  mapping_at(facts, addr, &g);
  return g != nullptr && g->loaded ? g : nullptr;
}

std::vector<ModuleGroup> group_mappings(const std::vector<FileMapping>& files,
                                        std::vector<size_t>& file_groups) {
  std::vector<ModuleGroup> groups;
  file_groups.assign(files.size(), 0);
  for (size_t i = 0; i < files.size(); ++i) {
    const FileMapping& m = files[i];
    // The next segment of the group just before: the same file, right after it, not back in
    // the file (two segments may share a file page: rodata and relro often do). A mapping at
    // offset 0 always starts an image of its own.
    if (i > 0 && !groups.empty() && m.file_offset != 0) {
      ModuleGroup& g = groups.back();
      const FileMapping& prev = files[i - 1];
      if (prev.path == m.path && m.start >= prev.end && m.file_offset >= prev.file_offset) {
        g.end = m.end;
        ++g.count;
        file_groups[i] = groups.size() - 1;
        continue;
      }
    }
    ModuleGroup g;
    g.path = m.path;
    g.start = m.start;
    g.end = m.end;
    g.first = i;
    g.count = 1;
    g.header = m.file_offset == 0;
    file_groups[i] = groups.size();
    groups.push_back(std::move(g));
  }
  return groups;
}

void group_modules(CoreFacts& facts, const std::function<bool(const FileMapping&)>& is_executable) {
  facts.modules = group_mappings(facts.files, facts.file_groups);
  for (auto& g : facts.modules) {
    for (size_t i = g.first; i < g.first + g.count && !g.executable; ++i) {
      g.executable = is_executable(facts.files[i]);
    }
    g.loaded = g.header && g.executable;
    if (const auto id = facts.build_ids.find(g.path); id != facts.build_ids.end()) {
      g.build_id = id->second;
    }
  }
}

bool maps_segments(const ModuleGroup& group, const std::vector<FileMapping>& files,
                   std::span<const ElfImage::Segment> loads, uint64_t page_size,
                   const std::function<bool(const FileMapping&)>& is_executable) {
  if (!group.header || loads.empty() || page_size == 0 || (page_size & (page_size - 1)) != 0 ||
      group.first > files.size() || group.count > files.size() - group.first) {
    return false;
  }
  const uint64_t mask = ~(page_size - 1);
  const uint64_t base_vaddr = loads.front().vaddr & mask;
  if ((loads.front().offset & mask) != 0) {
    return false; // the header is not in the first segment: not what a loader maps at offset 0
  }
  const std::span<const FileMapping> mine(files.data() + group.first, group.count);
  for (const auto& seg : loads) {
    if (seg.filesz == 0) {
      continue; // all bss: anonymous memory, not in NT_FILE
    }
    const uint64_t rel = (seg.vaddr & mask) - base_vaddr;
    if ((seg.vaddr & mask) < base_vaddr || rel > UINT64_MAX - group.start) {
      return false;
    }
    const uint64_t addr = group.start + rel;
    const auto m = std::ranges::find_if(
        mine, [&](const FileMapping& f) { return addr >= f.start && addr < f.end; });
    if (m == mine.end() || m->file_offset + (addr - m->start) != (seg.offset & mask)) {
      return false;
    }
    if ((seg.flags & PF_X) != 0 && !is_executable(*m)) {
      return false;
    }
  }
  return true;
}

std::string module_basename(std::string_view path) {
  constexpr std::string_view k_deleted = " (deleted)";
  if (path.ends_with(k_deleted)) {
    path.remove_suffix(k_deleted.size());
  }
  return std::string(base_name(path));
}

void CoreScanner::fail(std::string why) {
  if (m_facts.format_error.empty()) {
    m_facts.format_error = std::move(why);
  }
  m_phase = Phase::dead;
  m_pending.clear();
  m_active.clear();
  m_active_bytes = 0;
}

// Warnings are distinct kinds without offsets (fewer than k_max_warnings of them), sorted at
// the end: the same input gives the same list whatever the chunking.
void CoreScanner::warn(std::string what) {
  auto& w = m_facts.warnings;
  if (w.size() < k_max_warnings && std::find(w.begin(), w.end(), what) == w.end()) {
    w.push_back(std::move(what));
  }
}

void CoreScanner::observe(std::span<const std::byte> chunk) {
  if (m_finished) {
    return;
  }
  m_facts.received = sat_add(m_facts.received, chunk.size());
  while (!chunk.empty()) {
    // Split the chunk at every offset where something starts or ends, so each piece goes to a
    // fixed set of consumers. With nothing left to watch, the whole chunk is one piece.
    const uint64_t boundary = next_boundary();
    size_t n = chunk.size();
    if (boundary > m_pos && boundary - m_pos < n) {
      n = static_cast<size_t>(boundary - m_pos);
    }
    deliver(chunk.first(n));
    m_pos = sat_add(m_pos, n);
    chunk = chunk.subspan(n);
    settle();
  }
}

bool CoreScanner::wants_more() const {
  if (m_finished || m_phase == Phase::dead) {
    return false;
  }
  return m_phase != Phase::body || !m_pending.empty() || !m_active.empty();
}

uint64_t CoreScanner::next_boundary() const {
  uint64_t b = k_max;
  if (m_phase == Phase::header) {
    b = k_ehdr_size;
  } else if (m_phase == Phase::phdrs) {
    const uint64_t entry = m_phoff + m_ph_index * k_phdr_size; // checked in parse_header
    b = m_pos < entry ? entry : entry + k_phdr_size;
  }
  if (!m_pending.empty()) {
    b = std::min(b, m_pending.back().begin);
  }
  for (const auto& r : m_active) {
    b = std::min(b, r.end);
  }
  return b;
}

void CoreScanner::deliver(std::span<const std::byte> piece) {
  if (m_phase == Phase::header) {
    std::memcpy(m_ehdr.data() + m_pos, piece.data(), piece.size());
  } else if (m_phase == Phase::phdrs) {
    const uint64_t entry = m_phoff + m_ph_index * k_phdr_size;
    if (m_pos >= entry) {
      std::memcpy(m_phdr.data() + (m_pos - entry), piece.data(), piece.size());
    }
  }
  for (auto& r : m_active) {
    if (r.notes) {
      m_notes_end = r.end;
      r.notes->feed(piece, *this);
    } else {
      r.data.insert(r.data.end(), piece.begin(), piece.end());
    }
  }
}

void CoreScanner::settle() {
  if (m_phase == Phase::header && m_pos >= k_ehdr_size) {
    parse_header();
  }
  while (m_phase == Phase::phdrs && m_pos >= m_phoff + (m_ph_index + 1) * k_phdr_size) {
    parse_phdr();
  }
  for (size_t i = 0; i < m_active.size();) {
    if (m_active[i].end <= m_pos) {
      Region r = std::move(m_active[i]);
      m_active.erase(m_active.begin() + static_cast<ptrdiff_t>(i));
      complete_region(r);
    } else {
      ++i;
    }
  }
  register_windows();
  if (!m_pending_sorted) {
    // Registered in batches (a whole NT_FILE at once): one sort beats sorted inserts.
    std::stable_sort(m_pending.begin(), m_pending.end(),
                     [](const Region& a, const Region& b) { return a.begin > b.begin; });
    m_pending_sorted = true;
  }
  while (!m_pending.empty() && m_pending.back().begin <= m_pos) {
    Region r = std::move(m_pending.back());
    m_pending.pop_back();
    // Note segments count too, for the descriptor their stream may buffer: 16 PT_NOTE headers
    // over one 16 MiB note would otherwise hold 16 copies of it at once.
    const uint64_t size = r.end - r.begin; // each capture kind is capped at registration
    r.charge = r.kind == RegionKind::notes ? std::min(size, k_max_note_desc) : size;
    if (m_active_bytes + r.charge > k_max_buffered) {
      warn(r.kind == RegionKind::notes ? "too many overlapping note segments; skipped some"
                                       : "too many overlapping windows; skipped some");
      continue;
    }
    m_active_bytes += r.charge;
    if (r.kind != RegionKind::notes) {
      r.data.reserve(static_cast<size_t>(size));
    }
    m_active.push_back(std::move(r));
  }
}

void CoreScanner::parse_header() {
  static_assert(sizeof(m_ehdr) == k_ehdr_size && sizeof(m_phdr) == k_phdr_size);
  const Elf64_Ehdr eh = read_struct<Elf64_Ehdr>(m_ehdr, 0).value();
  m_facts.is_elf = std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0;
  if (!m_facts.is_elf) {
    return fail("not an ELF file");
  }
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return fail("not ELFCLASS64 (class " + std::to_string(eh.e_ident[EI_CLASS]) + ")");
  }
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return fail("not little-endian (data " + std::to_string(eh.e_ident[EI_DATA]) + ")");
  }
  m_machine = eh.e_machine;
  m_facts.machine = machine_name(m_machine);
  if (eh.e_type != ET_CORE) {
    return fail("not a core file (e_type " + std::to_string(eh.e_type) + ")");
  }
  if (m_machine != EM_X86_64 && m_machine != EM_AARCH64) {
    warn("unsupported machine " + m_facts.machine + ": no registers");
  }
  m_phoff = eh.e_phoff;
  const uint64_t shoff = eh.e_shoff;
  m_xnum = eh.e_phnum == PN_XNUM;
  m_ph_limit = m_xnum ? k_max_phdrs : eh.e_phnum;
  if (eh.e_phnum == 0) {
    return fail("no program headers");
  }
  if (eh.e_phentsize != k_phdr_size) {
    return fail("e_phentsize " + std::to_string(eh.e_phentsize) + " is not 56");
  }
  // The kernel writes the table right after the header; anything else we would already have
  // streamed past.
  if (m_phoff < k_ehdr_size || m_phoff > k_max - m_ph_limit * k_phdr_size - k_phdr_size) {
    return fail("program header offset " + std::to_string(m_phoff) + " out of range");
  }
  m_phase = Phase::phdrs;
  if (m_xnum && eh.e_shentsize == k_shdr_size && shoff >= k_ehdr_size &&
      shoff < k_max - k_shdr_size) {
    // The real count is in sh_info of section header 0, written after all the memory; the
    // table's end is inferred meanwhile (see parse_phdr) and checked against it at the end.
    Region r;
    r.begin = shoff;
    r.end = shoff + k_shdr_size;
    r.kind = RegionKind::shdr;
    register_region(std::move(r));
    m_facts.expected_size = std::max(m_facts.expected_size, shoff + k_shdr_size);
  }
}

void CoreScanner::parse_phdr() {
  const Elf64_Phdr ph = read_struct<Elf64_Phdr>(m_phdr, 0).value();
  const uint32_t type = ph.p_type;
  const uint64_t offset = ph.p_offset;
  const uint64_t filesz = ph.p_filesz;
  ++m_ph_index;
  const uint64_t table_end = m_phoff + m_ph_index * k_phdr_size;
  if (type == PT_LOAD || type == PT_NOTE) {
    if (filesz > k_max - offset) {
      warn("a segment's offset + size overflows; ignored");
    } else {
      m_facts.expected_size = std::max(m_facts.expected_size, offset + filesz);
      if (type == PT_LOAD) {
        m_loads.push_back(Load{ph.p_vaddr, ph.p_memsz, offset, filesz, ph.p_flags});
      } else if (filesz > 0 && m_note_segments++ < k_max_note_segments) {
        Region r;
        r.begin = offset;
        r.end = offset + filesz;
        r.kind = RegionKind::notes;
        r.notes.emplace(k_max_note_desc);
        register_region(std::move(r));
      }
    }
    // PN_XNUM: the table cannot reach into segment data, and the kernel writes the notes
    // right after it, so the first PT_NOTE's p_offset is exactly where the table ends.
    if (offset >= table_end) {
      m_ph_bound = std::min(m_ph_bound, offset);
    }
  }
  const bool full = m_ph_index >= m_ph_limit;
  const bool xnum_end = m_xnum && (m_ph_bound < table_end || m_ph_bound - table_end < k_phdr_size);
  if (full && m_xnum) {
    warn("more than " + std::to_string(k_max_phdrs) + " program headers; ignored the rest");
  }
  if (full || xnum_end) {
    end_phdrs();
  }
}

void CoreScanner::end_phdrs() {
  m_phase = Phase::body;
  m_facts.phnum = m_ph_index;
  std::stable_sort(m_loads.begin(), m_loads.end(),
                   [](const Load& a, const Load& b) { return a.vaddr < b.vaddr; });
}

void CoreScanner::register_region(Region r) {
  if (r.end <= r.begin) {
    return;
  }
  if (r.begin < m_pos || (r.kind != RegionKind::notes && r.begin < m_window_floor)) {
    warn("data precedes the headers or notes that locate it; skipped");
    return;
  }
  m_pending.push_back(std::move(r));
  m_pending_sorted = false;
}

void CoreScanner::complete_region(Region& r) {
  m_active_bytes -= std::min(m_active_bytes, r.charge);
  const std::span<const std::byte> data(r.data);
  switch (r.kind) {
  case RegionKind::notes:
    keep_unclaimed_stack();
    if (r.notes->mid_note()) {
      warn("note segment ends inside a note");
    }
    if (r.notes->oversized() > 0) {
      warn("skipped a note descriptor larger than " + std::to_string(k_max_note_desc) + " bytes");
    }
    return;
  case RegionKind::build_id: {
    // What identifies the image (build-id notes, the page itself) and where its segments go.
    PageCopy page;
    page.image = read_elf_image(data);
    if (page.image.elf) {
      page.bytes = data.size();
      page.digest =
          sha256_hex(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
      m_pages.emplace(r.start, std::move(page));
    }
    break;
  }
  case RegionKind::stack:
    if (r.thread < m_facts.thread_states.size()) {
      ThreadState& t = m_facts.thread_states[r.thread];
      // r.data is still scanned below.
      if (r.interrupted) {
        t.interrupted_base = r.address;
        t.interrupted_stack = r.data;
      } else {
        t.stack = r.data;
      }
      note_signal_frames(r.thread, r.address, data, r.interrupted);
    }
    if (r.thread != 0 || r.interrupted) {
      break;
    }
    // Any 8-byte value pointing into executable memory may be a return address. This finds
    // callers even without frame pointers, at the price of stale values: hence "best effort".
    for (uint64_t off = 0; off + 8 <= data.size(); off += 8) {
      const uint64_t v = read_le<uint64_t>(data, off).value_or(0);
      const Load* l = find_load(v);
      if (l != nullptr && (l->flags & PF_X) != 0) {
        m_stack_candidates.push_back(v);
        if (m_stack_candidates.size() >= k_max_frames) {
          break;
        }
      }
    }
    break;
  case RegionKind::shdr:
    if (const auto sh = read_struct<Elf64_Shdr>(data, 0)) {
      m_xnum_count = sh->sh_info;
    }
    break;
  }
}

// The kernel's signal frames in a stack window just completed; the first whose interrupted sp
// lies outside the window gets a window of its own there, when that memory is still ahead in
// the stream (the stream goes by address: an interrupted stack below the alternate one has
// passed already).
void CoreScanner::note_signal_frames(size_t index, uint64_t base, std::span<const std::byte> data,
                                     bool interrupted) {
  ThreadState& t = m_facts.thread_states[index];
  const auto executable = [this](uint64_t a) {
    const Load* l = find_load(a);
    return l != nullptr && (l->flags & PF_X) != 0;
  };
  for (const auto& f : find_signal_frames(data, base, m_machine, executable)) {
    if (t.signal_frames.size() >= k_max_signal_frames) {
      break;
    }
    t.signal_frames.push_back(f);
  }
  if (interrupted || m_interrupted_kept.contains(index)) {
    return;
  }
  const auto in = [](uint64_t a, uint64_t lo, size_t size) { return a >= lo && a - lo < size; };
  const auto outside = std::ranges::find_if(t.signal_frames, [&](const SignalFrame& f) {
    return !in(f.sp, base, data.size()) &&
           !in(f.sp, t.interrupted_base, t.interrupted_stack.size());
  });
  if (outside == t.signal_frames.end()) {
    return;
  }
  const Load* l = find_load(outside->sp);
  const uint64_t delta = l != nullptr ? outside->sp - l->vaddr : 0;
  if (l == nullptr || delta >= l->filesz) {
    return; // not dumped
  }
  const uint64_t begin = sat_add(l->offset, delta);
  if (begin < m_pos) {
    warn("the stack a signal interrupted precedes its signal frame in the core; not kept");
    return;
  }
  // Other threads' interrupted windows leave the reserve to the crashing thread's.
  const uint64_t cap = index == 0 ? k_stack_window : k_thread_stack_window;
  const uint64_t budget =
      index == 0 ? k_max_stack_bytes : k_max_stack_bytes - k_interrupted_reserve;
  const uint64_t size =
      std::min({l->filesz - delta, cap, budget - std::min(budget, m_stack_bytes)});
  if (size == 0) {
    warn("stack windows reached " + std::to_string(k_max_stack_bytes) + " bytes; skipped some");
    return;
  }
  m_stack_bytes += size;
  m_interrupted_kept.insert(index);
  Region r;
  r.begin = begin;
  r.end = sat_add(begin, size);
  r.kind = RegionKind::stack;
  r.thread = index;
  r.interrupted = true;
  r.address = outside->sp;
  register_region(std::move(r));
}

// The other order: an alternate stack allocated before its thread's stack (mmap hands out
// addresses downwards) puts the interrupted stack earlier in the stream than the signal frame
// that would locate it. Decided when the notes end, from the registers and the mappings, for
// the crashing thread unless its sp is on the main thread's stack (the highest writable
// mapping): when sp is in a thread stack (a PT_LOAD right above a PROT_NONE one, glibc's
// guard) — which an alternate stack mapped right above it merges into —, ≤ 256 KiB just below
// sp; otherwise the top ≤ 256 KiB of the nearest thread stack below sp that no thread's sp is
// on: the frames of a thread that was not deep in its stack when the signal came. Either comes
// from the crashing thread's reserve; a window at the frame's sp is still kept later when the
// frame says this one was the wrong stack.
void CoreScanner::keep_unclaimed_stack() {
  if (std::exchange(m_unclaimed_decided, true) || m_machine != EM_X86_64 ||
      m_facts.thread_states.empty() || !m_facts.thread_states[0].sp || m_loads.empty()) {
    return;
  }
  const uint64_t sp = *m_facts.thread_states[0].sp;
  const Load* here = find_load(sp);
  if (here == nullptr) {
    return;
  }
  const auto writable = [](const Load& l) { return (l.flags & PF_W) != 0 && l.filesz > 0; };
  const auto guarded = [&](size_t i) {
    if (i == 0) {
      return false;
    }
    const Load& g = m_loads[i - 1];
    return g.flags == 0 && g.vaddr + g.memsz == m_loads[i].vaddr && writable(m_loads[i]);
  };
  const size_t at = static_cast<size_t>(here - m_loads.data());
  const auto top = std::find_if(m_loads.rbegin(), m_loads.rend(), writable);
  if (top == m_loads.rend() || &*top == here) {
    return; // the main thread's stack, the highest: any alternate stack is below it
  }
  const uint64_t budget = k_max_stack_bytes - std::min(k_max_stack_bytes, m_stack_bytes);
  if (guarded(at)) {
    // A thread stack, or an alternate stack mapped right above one: the kernel merges the two
    // into one mapping, and the interrupted frames are just below sp.
    const uint64_t below = sp - here->vaddr;
    const uint64_t size = std::min({below, k_stack_window, budget});
    if (below == 0 || below > here->filesz || size == 0) {
      return;
    }
    m_stack_bytes += size;
    Region r;
    r.begin = sat_add(here->offset, below - size);
    r.end = sat_add(r.begin, size);
    r.kind = RegionKind::stack;
    r.thread = 0;
    r.interrupted = true;
    r.address = sp - size;
    register_region(std::move(r));
    return;
  }
  const auto claimed = [&](const Load& l) {
    return std::ranges::any_of(m_facts.thread_states, [&](const ThreadState& t) {
      return t.sp && *t.sp >= l.vaddr && *t.sp - l.vaddr < l.memsz;
    });
  };
  for (size_t i = at; i-- > 1;) {
    const Load& l = m_loads[i];
    if (!guarded(i) || claimed(l) || l.offset >= here->offset) {
      continue;
    }
    const uint64_t size = std::min({l.filesz, k_stack_window, budget});
    if (size == 0) {
      return;
    }
    m_stack_bytes += size;
    Region r;
    r.begin = sat_add(l.offset, l.filesz - size);
    r.end = sat_add(r.begin, size);
    r.kind = RegionKind::stack;
    r.thread = 0;
    r.interrupted = true;
    r.address = l.vaddr + (l.filesz - size);
    register_region(std::move(r));
    return;
  }
}

const CoreScanner::Load* CoreScanner::find_load(uint64_t addr) const {
  auto it = std::upper_bound(m_loads.begin(), m_loads.end(), addr,
                             [](uint64_t a, const Load& l) { return a < l.vaddr; });
  if (it == m_loads.begin()) {
    return nullptr;
  }
  --it;
  return addr - it->vaddr < it->memsz ? &*it : nullptr;
}

// Windows into PT_LOAD data depend on notes (sp, NT_FILE) and on the whole program header table;
// both precede the memory in a kernel core, so they are registered before their data arrives.
void CoreScanner::register_windows() {
  if (m_phase != Phase::body) {
    return;
  }
  while (m_stacks_registered < m_facts.thread_states.size()) {
    const size_t index = m_stacks_registered++;
    ThreadState& t = m_facts.thread_states[index];
    const Load* l = t.sp ? find_load(*t.sp) : nullptr;
    const uint64_t delta = l != nullptr ? *t.sp - l->vaddr : 0;
    if (l == nullptr || delta >= l->filesz) {
      continue; // sp outside dumped memory (a stack overflow into a guard page, garbage)
    }
    const uint64_t cap = index == 0 ? k_stack_window : k_thread_stack_window;
    const uint64_t budget = k_max_stack_bytes - k_interrupted_reserve;
    const uint64_t size =
        std::min({l->filesz - delta, cap, budget - std::min(budget, m_stack_bytes)});
    if (size == 0) {
      warn("stack windows reached " + std::to_string(k_max_stack_bytes) + " bytes; skipped some");
      continue;
    }
    m_stack_bytes += size;
    t.stack_base = *t.sp;
    Region r;
    r.begin = sat_add(l->offset, delta);
    r.end = sat_add(r.begin, size);
    r.kind = RegionKind::stack;
    r.thread = index;
    r.address = *t.sp;
    register_region(std::move(r));
  }
  if (!m_build_ids_registered && m_seen_file) {
    m_build_ids_registered = true;
    // Every mapping at offset 0, not only a path's first: a file mapped again (a crash
    // reporter reading its libraries) lies at lower addresses than the loader's image as often
    // as not, and dlmopen maps one file several times.
    for (const auto& m : m_facts.files) {
      if (m.file_offset != 0) {
        continue;
      }
      const Load* l = find_load(m.start);
      const uint64_t delta = l != nullptr ? m.start - l->vaddr : 0;
      if (l == nullptr || delta >= l->filesz) {
        continue; // not dumped here; a later mapping of the same file may be
      }
      if (m_windows++ >= k_max_build_id_windows) {
        warn("more than " + std::to_string(k_max_build_id_windows) +
             " modules; no build-ids "
             "for the rest");
        break;
      }
      Region r;
      r.begin = sat_add(l->offset, delta);
      r.end = sat_add(r.begin, std::min({l->filesz - delta, k_build_id_window, m.end - m.start}));
      r.kind = RegionKind::build_id;
      r.path = m.path;
      r.start = m.start;
      register_region(std::move(r));
    }
  }
}

bool CoreScanner::want(std::string_view name, uint32_t type) {
  if (name != "CORE") {
    return false;
  }
  switch (type) {
  case NT_PRSTATUS:
    return m_facts.thread_states.size() < k_max_threads;
  case NT_SIGINFO:
    return !m_seen_siginfo;
  case NT_PRPSINFO:
    return !m_seen_prpsinfo;
  case NT_AUXV:
    return !m_seen_auxv;
  case NT_FILE:
    return !m_seen_file;
  default:
    return false;
  }
}

void CoreScanner::on_note(const ElfNote& note) {
  if (note.name != "CORE") {
    return;
  }
  auto& f = m_facts;
  switch (note.type) {
  case NT_PRSTATUS:
    ++f.threads;
    // Windows a note asks for must start after its note segment: the note completes at a
    // position that depends on the chunking, the segment's end does not.
    m_window_floor = std::max(m_window_floor, m_notes_end);
    {
      auto p = decode_prstatus(note.desc, m_machine);
      // Only the first prstatus is the crashing thread, even when its descriptor was unusable.
      if (!std::exchange(m_seen_prstatus, true) && p) {
        f.pc = p->pc;
        f.sp = p->sp;
        f.lr = p->lr;
        f.tid = p->pid;
        f.cursig = p->cursig;
      }
      if (f.thread_states.size() < k_max_threads) {
        ThreadState t;
        if (p) {
          t.tid = p->pid;
          t.cursig = p->cursig;
          t.pc = p->pc;
          t.sp = p->sp;
          t.gregs = std::move(p->gregs);
        }
        f.thread_states.push_back(std::move(t));
      } else if (f.threads == k_max_threads + 1) {
        warn("more than " + std::to_string(k_max_threads) + " threads; no registers for the rest");
      }
    }
    break;
  case NT_SIGINFO:
    if (!std::exchange(m_seen_siginfo, true)) {
      if (const auto s = decode_siginfo(note.desc)) {
        f.si_signo = s->signo;
        f.si_errno = s->err;
        f.si_code = s->code;
        f.si_code_name = std::string(si_code_name(s->signo, s->code));
        f.fault_address = s->fault_address;
        f.sender_pid = s->sender_pid;
        f.sender_uid = s->sender_uid;
        f.syscall = s->syscall;
        f.syscall_arch = s->syscall_arch;
      }
    }
    break;
  case NT_PRPSINFO:
    if (!std::exchange(m_seen_prpsinfo, true)) {
      if (auto p = decode_prpsinfo(note.desc)) {
        f.pid = p->pid;
        f.uid = p->uid;
        f.gid = p->gid;
        f.fname = std::move(p->fname);
        f.psargs = std::move(p->psargs);
      }
    }
    break;
  case NT_AUXV:
    if (!std::exchange(m_seen_auxv, true)) {
      const AuxvFacts a = decode_auxv(note.desc);
      f.at_secure = a.at_secure;
      f.at_uid = a.at_uid;
      f.at_euid = a.at_euid;
      f.at_gid = a.at_gid;
      f.at_egid = a.at_egid;
      f.at_entry = a.at_entry;
      f.at_sysinfo_ehdr = a.at_sysinfo_ehdr;
    }
    break;
  case NT_FILE:
    if (!m_seen_file && note.complete) {
      m_seen_file = true;
      m_window_floor = std::max(m_window_floor, m_notes_end);
      NtFile nt = decode_nt_file(note.desc);
      if (!nt.error.empty()) {
        warn(nt.error);
      }
      f.file_page_size = nt.page_size;
      f.files = std::move(nt.mappings);
    }
    break;
  default:
    break;
  }
}

void CoreScanner::finish() {
  if (std::exchange(m_finished, true)) {
    return;
  }
  // Windows cut by the end of the stream still hold useful bytes (a stack prefix, a first page).
  for (auto& r : m_active) {
    complete_region(r);
  }
  m_active.clear();
  m_pending.clear();
  auto& f = m_facts;
  if (m_phase == Phase::header) {
    static constexpr std::byte k_magic[] = {std::byte{0x7f}, std::byte{'E'}, std::byte{'L'},
                                            std::byte{'F'}};
    const size_t n = static_cast<size_t>(std::min<uint64_t>(m_pos, 4));
    const bool prefix =
        n > 0 &&
        std::equal(m_ehdr.begin(), m_ehdr.begin() + static_cast<ptrdiff_t>(n), std::begin(k_magic));
    f.is_elf = prefix && n == 4;
    f.format_error = m_pos == 0 ? "empty input"
                     : prefix   ? "input ends inside the ELF header"
                                : "not an ELF file";
    if (prefix) {
      f.expected_size = k_ehdr_size;
    }
  } else if (m_phase == Phase::phdrs) {
    f.phnum = m_ph_index;
    warn("input ends inside the program headers");
    if (!m_xnum) {
      f.expected_size = std::max(f.expected_size, m_phoff + m_ph_limit * k_phdr_size);
    }
    f.expected_size = std::max(f.expected_size, sat_add(m_pos, 1));
  }
  if (m_xnum && m_xnum_count && *m_xnum_count != f.phnum) {
    warn("PN_XNUM: section header 0 says " + std::to_string(*m_xnum_count) +
         " program headers, the table held " + std::to_string(f.phnum));
  }
  f.truncated = f.received < f.expected_size;
  std::sort(f.warnings.begin(), f.warnings.end());
  group_modules();
  derive();
}

void CoreScanner::group_modules() {
  auto& f = m_facts;
  // The kernel writes NT_FILE in address order; a hostile core need not.
  std::ranges::stable_sort(f.files, {}, &FileMapping::start);
  f.modules = group_mappings(f.files, f.file_groups);
  const uint64_t page = f.file_page_size != 0 ? f.file_page_size : 4096;
  const auto executable = [&](const FileMapping& m) {
    const Load* l = find_load(m.start);
    return l != nullptr && (l->flags & PF_X) != 0;
  };
  for (auto& g : f.modules) {
    for (size_t i = g.first; i < g.first + g.count && !g.executable; ++i) {
      g.executable = executable(f.files[i]);
    }
    if (!g.header) {
      continue;
    }
    const auto copy = m_pages.find(g.start);
    if (copy == m_pages.end()) {
      g.loaded = g.executable; // no copy of its headers: the executable image of the file
      continue;
    }
    const PageCopy& c = copy->second;
    g.build_id = c.image.gnu_build_id;
    g.go_build_id = c.image.go_build_id;
    g.page_digest = c.digest;
    g.page_bytes = c.bytes;
    g.loaded = c.image.loads.empty() ? g.executable
                                     : maps_segments(g, f.files, c.image.loads, page, executable);
  }
  // One build-id per path for the checks by path (check_mapped_files, the record's mappings):
  // the loaded image's, else any group's (a file mapped only to be read is the same file).
  for (const bool loaded : {true, false}) {
    for (const auto& g : f.modules) {
      if (g.loaded == loaded && !g.build_id.empty()) {
        f.build_ids.emplace(g.path, g.build_id);
      }
    }
  }
  find_anonymous_code();
}

// A JIT compiler's code lives in executable memory that maps no file. The NT_FILE mappings are
// sorted by start: with the running maximum of their ends, whether any of them overlaps a
// segment is one binary search, so a hostile core with many segments and mappings costs
// O((segments + mappings) log mappings).
void CoreScanner::find_anonymous_code() {
  auto& f = m_facts;
  std::vector<uint64_t> max_end(f.files.size());
  uint64_t running = 0;
  for (size_t i = 0; i < f.files.size(); ++i) {
    running = std::max(running, f.files[i].end);
    max_end[i] = running;
  }
  for (const Load& l : m_loads) {
    if ((l.flags & PF_X) == 0 || l.memsz == 0 || l.vaddr > k_max - l.memsz ||
        (f.at_sysinfo_ehdr && *f.at_sysinfo_ehdr == l.vaddr)) {
      continue;
    }
    const uint64_t end = l.vaddr + l.memsz;
    const auto after =
        std::lower_bound(f.files.begin(), f.files.end(), end,
                         [](const FileMapping& m, uint64_t a) { return m.start < a; });
    const auto n = static_cast<size_t>(after - f.files.begin());
    if (n > 0 && max_end[n - 1] > l.vaddr) {
      continue;
    }
    if (f.anonymous_code.size() >= k_max_anonymous_code) {
      warn("more than " + std::to_string(k_max_anonymous_code) +
           " anonymous executable segments; ignored the rest");
      break;
    }
    if (!f.anonymous_code.empty() && f.anonymous_code.back().end == l.vaddr) {
      f.anonymous_code.back().end = end; // the kernel splits a region by its flags only
    } else if (f.anonymous_code.empty() || f.anonymous_code.back().end < l.vaddr) {
      f.anonymous_code.push_back({l.vaddr, end});
    }
  }
}

bool anonymous_code_at(const CoreFacts& facts, uint64_t pc) {
  const auto& r = facts.anonymous_code;
  const auto it = std::upper_bound(r.begin(), r.end(), pc,
                                   [](uint64_t a, const AddressRange& x) { return a < x.start; });
  return it != r.begin() && pc < std::prev(it)->end;
}

void CoreScanner::derive() {
  auto& f = m_facts;
  // The crash site, and the module identity the signature uses: the build-id when the first
  // page was dumped, else the file name (paths differ between hosts and containers).
  auto site_of = [&](const FileMapping& m, uint64_t addr) {
    const uint64_t off = addr - m.start + m.file_offset;
    const ModuleGroup* g = nullptr;
    mapping_at(f, addr, &g);
    const std::string module_id =
        g != nullptr && !g->build_id.empty() ? "b:" + g->build_id : "n:" + module_basename(m.path);
    return module_id + "+" + hex_u64(off);
  };
  std::string site;
  if (f.pc) {
    const ModuleGroup* g = nullptr;
    if (const FileMapping* m = mapping_at(f, *f.pc, &g)) {
      f.module = m->path;
      f.module_offset = *f.pc - m->start + m->file_offset;
      if (g != nullptr && !g->build_id.empty()) {
        f.build_id = g->build_id;
      }
      site = site_of(*m, *f.pc);
    }
  }
  // aarch64 keeps the caller of a leaf function in lr: the most reliable frame there is.
  std::vector<uint64_t> candidates;
  if (f.lr) {
    const Load* l = find_load(*f.lr);
    if (l != nullptr && (l->flags & PF_X) != 0) {
      candidates.push_back(*f.lr);
    }
  }
  candidates.insert(candidates.end(), m_stack_candidates.begin(), m_stack_candidates.end());
  for (const uint64_t a : candidates) {
    if (f.frames.size() >= k_max_frames) {
      break;
    }
    StackFrame fr;
    fr.address = a;
    if (const FileMapping* m = mapping_at(f, a)) {
      fr.module = m->path;
      fr.module_offset = a - m->start + m->file_offset;
      if (site.empty()) {
        // pc outside any file (a call through a bad pointer, JIT code): the first caller
        // candidate in a module identifies the crash instead.
        site = "caller:" + site_of(*m, a);
      }
    }
    f.frames.push_back(std::move(fr));
  }
  const std::optional<int> signo = f.si_signo ? f.si_signo : f.cursig;
  if (!f.is_elf || (!signo && !f.pc)) {
    return;
  }
  // v1|<signo>|<si_code>|<site>: numbers rather than names so a table update cannot regroup.
  f.signature_input = "v1|" + (signo ? std::to_string(*signo) : "?") + "|" +
                      (f.si_code ? std::to_string(*f.si_code) : "?") + "|" +
                      (site.empty() ? "?" : site);
  f.signature = sha256_hex(f.signature_input, 16);
}

} // namespace common
