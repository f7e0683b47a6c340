#include "common/crash/unwind.hpp"

#include "common/base/bytes.hpp"
#include "common/base/fd.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/base/sha256.hpp"
#include "common/crash/debug_file.hpp"
#include "common/crash/dwfl_ptr.hpp"
#include "common/crash/perf_map.hpp"
#include "common/crash/symbol_name.hpp"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <lzma.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <span>

namespace common {

namespace {

constexpr size_t k_max_modules = 1024;
constexpr size_t k_max_scan_words = 1024; // stack words examined by the scan fallback
constexpr uint64_t k_max_gnu_debugdata = 4u
                                         << 20; // compressed MiniDebugInfo we let libdwfl inflate
constexpr size_t k_max_die_name = 1024;         // bytes of a DW_AT_name kept

// DWARF register numbers of the stack and frame pointers (x86_64 psABI, AArch64 DWARF ABI).
struct Arch {
  uint16_t machine = 0;
  unsigned sp_reg = 0;
  unsigned fp_reg = 0;
};

bool deadline_passed(const UnwindOptions& o) {
  return std::chrono::steady_clock::now() >= o.deadline;
}

std::string build_id_hex(Elf* elf) {
  const void* bits = nullptr;
  const ssize_t n = dwelf_elf_gnu_build_id(elf, &bits);
  if (n <= 0 || bits == nullptr) {
    return {};
  }
  return hex_bytes(std::span(static_cast<const std::byte*>(bits), static_cast<size_t>(n)));
}

// The size a MiniDebugInfo section inflates to, from its xz index (at the end of the stream),
// or nothing when the index cannot be read. The compressed size is bounded before we look.
std::optional<uint64_t> xz_inflated_size(std::span<const std::byte> xz) {
  if (xz.size() < 2 * LZMA_STREAM_HEADER_SIZE) {
    return std::nullopt;
  }
  lzma_stream_flags footer{};
  const auto* end = reinterpret_cast<const uint8_t*>(xz.data() + xz.size());
  if (lzma_stream_footer_decode(&footer, end - LZMA_STREAM_HEADER_SIZE) != LZMA_OK ||
      footer.backward_size > xz.size() - 2 * LZMA_STREAM_HEADER_SIZE) {
    return std::nullopt;
  }
  lzma_index* index = nullptr;
  uint64_t memlimit = 1u << 20;
  size_t pos = 0;
  const uint8_t* in = end - LZMA_STREAM_HEADER_SIZE - footer.backward_size;
  if (lzma_index_buffer_decode(&index, &memlimit, nullptr, in, &pos, footer.backward_size) !=
      LZMA_OK) {
    return std::nullopt;
  }
  const uint64_t size = lzma_index_uncompressed_size(index);
  lzma_index_end(index, nullptr);
  return size;
}

// What one section costs in memory once libdw has it: the inflated size of a compressed one
// (SHF_COMPRESSED's header, a GNU .zdebug_ "ZLIB" header, MiniDebugInfo's xz index), which an
// attacker's file cannot understate: libelf inflates into a buffer of the declared size and
// fails beyond it. UINT64_MAX when the size cannot be known.
uint64_t inflated_size(Elf_Scn* scn, const GElf_Shdr& sh, std::string_view name) {
  if ((sh.sh_flags & SHF_COMPRESSED) != 0) {
    GElf_Chdr ch{};
    return gelf_getchdr(scn, &ch) != nullptr ? ch.ch_size : UINT64_MAX;
  }
  if (name.starts_with(".zdebug_") || name == ".gnu_debugdata") {
    if (name == ".gnu_debugdata" && sh.sh_size > k_max_gnu_debugdata) {
      return UINT64_MAX;
    }
    Elf_Data* raw = elf_rawdata(scn, nullptr);
    if (raw == nullptr || raw->d_buf == nullptr) {
      return UINT64_MAX;
    }
    const std::span bytes(static_cast<const std::byte*>(raw->d_buf), raw->d_size);
    if (name == ".gnu_debugdata") {
      return xz_inflated_size(bytes).value_or(UINT64_MAX);
    }
    // "ZLIB" and the inflated size as 8 big-endian bytes.
    if (bytes.size() < 12 || std::memcmp(bytes.data(), "ZLIB", 4) != 0) {
      return UINT64_MAX;
    }
    uint64_t size = 0;
    for (size_t i = 4; i < 12; ++i) {
      size = (size << 8) | std::to_integer<uint64_t>(bytes[i]);
    }
    return size;
  }
  return sh.sh_size;
}

// Bytes libdwfl would hold in memory to symbolize: symbol tables and DWARF, compressed sections
// counted at their inflated size (a zlib or xz bomb in a crasher's own file is refused here, not
// discovered by the handler's memory).
uint64_t symbol_bytes(Elf* elf) {
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf, &shstrndx) != 0) {
    return 0;
  }
  uint64_t total = 0;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr sh{};
    if (gelf_getshdr(scn, &sh) == nullptr || sh.sh_type == SHT_NOBITS) {
      continue;
    }
    const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
    const std::string_view n = name != nullptr ? name : "";
    if (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM || sh.sh_type == SHT_STRTAB ||
        n.starts_with(".debug_") || n.starts_with(".zdebug_") || n == ".gnu_debugdata") {
      const uint64_t size = inflated_size(scn, sh, n);
      if (size == UINT64_MAX) {
        return UINT64_MAX;
      }
      total += std::min<uint64_t>(size, UINT64_MAX - total);
    }
  }
  return total;
}

// A module from NT_FILE whose file on disk carries the build-id the core saw.
struct Module {
  std::string path;
  uint64_t start = 0; // where file offset 0 is mapped
  uint64_t end = 0;
  std::string build_id;
  UniqueFd fd;
  Elf* elf = nullptr; // handed to libdwfl by find_elf, which then owns it
  bool symbolize = true;
  const UnwindOptions* options = nullptr;
  // libdwfl asks find_debuginfo again for the debug file's DWZ alternate once it has the debug
  // file: that second call is for the alternate.
  bool debug_given = false;

  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  // libdwfl asks for a module's ELF only when it needs it: the others are still ours.
  ~Module() {
    if (elf != nullptr) {
      elf_end(elf);
    }
  }
};

// <dir>/.build-id/xx/rest.debug, opened for reading; empty when absent.
UniqueFd open_debug_file(const std::string& dir, const std::string& build_id) {
  const std::string path =
      dir + "/.build-id/" + build_id.substr(0, 2) + "/" + build_id.substr(2) + ".debug";
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
}

// The DWZ alternate file that the debug file on `debug` names: by its build-id under `dirs`,
// else at the path the link names when it is absolute, under one of `dirs`, without "..", and
// the file there has that build-id. These directories are the host's, as for debug files.
UniqueFd open_alt_file(int debug, const std::vector<std::string>& dirs) {
  const auto link = read_debug_altlink(debug);
  if (!link || link->build_id.size() < 4) {
    return {};
  }
  for (const auto& dir : dirs) {
    if (UniqueFd fd = open_debug_file(dir, link->build_id)) {
      return fd;
    }
  }
  const std::string_view path = link->path;
  if (!path.starts_with('/') || path.find("/../") != std::string_view::npos ||
      path.ends_with("/..")) {
    return {};
  }
  for (const auto& dir : dirs) {
    if (!dir.empty() && path.starts_with(dir) && path.size() > dir.size() &&
        (path[dir.size()] == '/' || dir.ends_with('/'))) {
      UniqueFd fd(::open(link->path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
      return read_section_build_id(fd.get()) == link->build_id ? std::move(fd) : UniqueFd();
    }
  }
  return {};
}

// The modules: the loaded images of the core's module groups (ModuleGroup::loaded, never a
// stray mapping of the same file), the first k_max_modules of them that the core identifies in
// some way (ModuleGroup::match). Calls `each(group)`; stops when it returns false.
template <typename F>
void for_each_module(const CoreFacts& facts, F each) {
  size_t n = 0;
  for (const ModuleGroup& g : facts.modules) {
    if (n >= k_max_modules) {
      return;
    }
    if (!g.loaded || g.match() == ModuleMatch::none || g.first >= facts.files.size()) {
      continue; // nothing to check the file on disk against
    }
    ++n;
    if (!each(g)) {
      return;
    }
  }
}

// The Go build id among the file's first note segments (bounded like symbolize's reads).
std::string go_build_id(Elf* elf) {
  constexpr unsigned k_max_segments = 4;
  constexpr uint64_t k_max_bytes = 64u << 10;
  size_t phnum = 0;
  if (elf_getphdrnum(elf, &phnum) != 0) {
    return {};
  }
  unsigned segments = 0;
  for (size_t i = 0; i < phnum && segments < k_max_segments; ++i) {
    GElf_Phdr ph{};
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr || ph.p_type != PT_NOTE) {
      continue;
    }
    ++segments;
    if (ph.p_filesz == 0 || ph.p_filesz > k_max_bytes) {
      continue;
    }
    Elf_Data* d =
        elf_getdata_rawchunk(elf, static_cast<int64_t>(ph.p_offset), ph.p_filesz, ELF_T_BYTE);
    if (d == nullptr || d->d_buf == nullptr) {
      continue;
    }
    const std::span notes(static_cast<const std::byte*>(d->d_buf), d->d_size);
    if (auto id = go_build_id_in_notes(notes)) {
      return *id;
    }
  }
  return {};
}

// Whether the file open on `fd` is the image the core saw, by the strongest identity the core
// holds (ModuleMatch): its GNU build-id, its Go build id, or the bytes of its first page.
bool matches_core(const ModuleGroup& g, int fd, Elf* elf) {
  switch (g.match()) {
  case ModuleMatch::build_id:
    return build_id_hex(elf) == g.build_id;
  case ModuleMatch::go_build_id:
    return go_build_id(elf) == g.go_build_id;
  case ModuleMatch::elf_headers: {
    // page_bytes is at most the scanner's window (64 KiB).
    std::vector<std::byte> page(static_cast<size_t>(g.page_bytes));
    return read_exact_at(fd, page, 0).has_value() &&
           sha256_hex(std::string_view(reinterpret_cast<const char*>(page.data()), page.size())) ==
               g.page_digest;
  }
  case ModuleMatch::none:
    break;
  }
  return false;
}

int find_elf(Dwfl_Module* /*mod*/, void** userdata, const char* /*name*/, Dwarf_Addr /*base*/,
             char** /*file_name*/, Elf** elfp) {
  auto* m = static_cast<Module*>(*userdata);
  if (m == nullptr || m->elf == nullptr) {
    return -1;
  }
  *elfp = std::exchange(m->elf, nullptr);
  return m->fd.release(); // libdwfl closes it with the Elf
}

// Separate debug files by build-id under the configured directories: never by .gnu_debuglink
// (a name chosen by whoever built the module) and never through debuginfod on this path. These
// directories are the host's, so following their symbolic links is intended.
int find_debuginfo(Dwfl_Module* /*mod*/, void** userdata, const char* /*name*/, Dwarf_Addr /*base*/,
                   const char* /*file_name*/, const char* /*debuglink*/, GElf_Word /*crc*/,
                   char** /*debuginfo_file_name*/) {
  auto* m = static_cast<Module*>(*userdata);
  if (m == nullptr || !m->symbolize || m->build_id.size() < 4 || m->options == nullptr) {
    return -1;
  }
  // The second call is for the DWZ alternate file of the debug file given by the first.
  const bool alt = std::exchange(m->debug_given, true);
  if (const AnalysisFiles* files = m->options->files) {
    const auto& from = alt ? files->alt : files->debug;
    const auto it = from.find(m->build_id);
    if (it == from.end()) {
      return -1;
    }
    // A copy: libdwfl closes what it is given.
    UniqueFd fd(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 3));
    if (UniqueFd ready =
            fd ? prepare_debug_file(std::move(fd), m->options->max_symbol_bytes) : UniqueFd()) {
      return ready.release();
    }
    return -1;
  }
  for (const auto& dir : m->options->debug_dirs) {
    UniqueFd fd = open_debug_file(dir, m->build_id);
    if (!fd) {
      continue;
    }
    if (alt) {
      fd = open_alt_file(fd.get(), m->options->debug_dirs);
    }
    // Inflated here, faster and only the sections we read, rather than all of them by libdw.
    if (UniqueFd ready = prepare_debug_file(std::move(fd), m->options->max_symbol_bytes)) {
      return ready.release(); // libdwfl checks its build-id before using it
    }
  }
  return -1;
}

const Dwfl_Callbacks k_callbacks = {
    .find_elf = find_elf,
    .find_debuginfo = find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = nullptr,
};

struct ElfDeleter {
  void operator()(Elf* e) const { elf_end(e); }
};

// One unwinding session over the facts of one core.
class Session {
public:
  Session(const CoreFacts& facts, const UnwindOptions& options)
      : m_facts(facts), m_options(options) {
    if (facts.machine == "x86_64") {
      m_arch = Arch{EM_X86_64, 7, 6};
    } else if (facts.machine == "aarch64") {
      m_arch = Arch{EM_AARCH64, 31, 29};
    }
  }

  std::vector<ThreadTrace> run();

private:
  static pid_t next_thread(Dwfl* dwfl, void* arg, void** thread_arg);
  static bool memory_read(Dwfl* dwfl, Dwarf_Addr addr, Dwarf_Word* result, void* arg);
  static bool set_initial_registers(Dwfl_Thread* thread, void* thread_arg);
  static int on_thread(Dwfl_Thread* thread, void* arg);
  static int on_frame(Dwfl_Frame* frame, void* arg);

  void report_modules();
  bool attach();
  std::optional<uint64_t> read_word(uint64_t addr) const;
  bool follows_call(uint64_t ret) const;
  bool code_bytes(uint64_t addr, std::span<uint8_t> out) const;
  bool is_sigreturn(uint64_t pc) const;
  bool has_cfi(uint64_t pc) const;
  void fall_back(ThreadTrace& t, uint64_t sp, std::optional<uint64_t> fp);
  void describe(Frame f, std::vector<Frame>& out) const;

  const CoreFacts& m_facts;
  const UnwindOptions& m_options;
  Arch m_arch;
  std::vector<std::byte> m_arch_image;
  std::unique_ptr<Elf, ElfDeleter> m_arch_elf;
  std::vector<std::unique_ptr<Module>> m_modules;
  // Declared last, ended first: it uses the architecture ELF and the modules' userdata.
  DwflPtr m_dwfl;
  std::vector<ThreadTrace> m_traces;
  size_t m_next_thread = 0;
  // The frame walk of the current thread.
  ThreadTrace* m_current = nullptr;
  uint64_t m_last_sp = 0;
  std::optional<uint64_t> m_last_fp;
  bool m_stopped_by_us = false;
};

pid_t Session::next_thread(Dwfl* /*dwfl*/, void* arg, void** thread_arg) {
  auto* s = static_cast<Session*>(arg);
  const size_t n = std::min({s->m_facts.thread_states.size(), s->m_options.max_threads});
  if (s->m_next_thread >= n) {
    return 0;
  }
  const size_t i = s->m_next_thread++;
  *thread_arg = const_cast<ThreadState*>(&s->m_facts.thread_states[i]);
  // Our own positive ids: the core's tids are hostile (0 would end the iteration, duplicates
  // would confuse libdwfl's thread lookup).
  return static_cast<pid_t>(i + 1);
}

std::optional<uint64_t> Session::read_word(uint64_t addr) const {
  for (const auto& t : m_facts.thread_states) {
    // The window at sp, and the one at the stack a signal interrupted (see elf_core.hpp).
    for (const auto& [base, bytes] :
         {std::pair(t.stack_base, &t.stack), std::pair(t.interrupted_base, &t.interrupted_stack)}) {
      if (addr >= base && addr - base <= bytes->size() && bytes->size() - (addr - base) >= 8) {
        return read_le<uint64_t>(*bytes, addr - base);
      }
    }
  }
  return std::nullopt;
}

bool Session::memory_read(Dwfl* /*dwfl*/, Dwarf_Addr addr, Dwarf_Word* result, void* arg) {
  const auto* s = static_cast<const Session*>(arg);
  if (const auto v = s->read_word(addr)) {
    *result = *v;
    return true;
  }
  return false;
}

bool Session::set_initial_registers(Dwfl_Thread* thread, void* thread_arg) {
  const auto* t = static_cast<const ThreadState*>(thread_arg);
  const auto& g = t->gregs;
  if (g.size() == 27) {
    // DWARF order rax rdx rcx rbx rsi rdi rbp rsp r8…r15 rip from user_regs_struct indices.
    static constexpr size_t k_map[17] = {10, 12, 11, 5, 13, 14, 4, 19, 9, 8, 7, 6, 3, 2, 1, 0, 16};
    Dwarf_Word regs[17];
    for (size_t i = 0; i < 17; ++i) {
      regs[i] = g[k_map[i]];
    }
    return dwfl_thread_state_registers(thread, 0, 17, regs);
  }
  if (g.size() == 34) {
    // x0…x30 and sp are DWARF 0…31; pc has no DWARF number.
    Dwarf_Word regs[32];
    std::copy_n(g.begin(), 32, regs);
    if (!dwfl_thread_state_registers(thread, 0, 32, regs)) {
      return false;
    }
    dwfl_thread_state_register_pc(thread, g[32]);
    return true;
  }
  return false;
}

void Session::report_modules() {
  for_each_module(m_facts, [&](const ModuleGroup& g) {
    if (deadline_passed(m_options)) {
      return false;
    }
    const FileMapping& first = m_facts.files[g.first];
    auto m = std::make_unique<Module>();
    m->path = first.path;
    m->start = g.start;
    m->end = g.end;
    m->build_id = g.build_id;
    m->options = &m_options;
    if (const AnalysisFiles* files = m_options.files) {
      // A copy: libdwfl closes the module's descriptor with its Elf.
      const auto it = files->modules.find(first.path);
      if (it != files->modules.end()) {
        m->fd.reset(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 3));
      }
    } else {
      m->fd = open_module_file(first.path, m_options.root_fd).fd;
    }
    if (!m->fd) {
      return true;
    }
    // ELF_C_READ: libelf reads what it needs with pread. A mapping (ELF_C_READ_MMAP, what
    // dwfl_report_elf would use) of a file its owner can truncate could SIGBUS us.
    m->elf = elf_begin(m->fd.get(), ELF_C_READ, nullptr);
    if (m->elf == nullptr || !matches_core(g, m->fd.get(), m->elf)) {
      return true; // ~Module ends the Elf
    }
    m->symbolize = symbol_bytes(m->elf) <= m_options.max_symbol_bytes;
    Dwfl_Module* dm = dwfl_report_module(m_dwfl.get(), m->path.c_str(), m->start, m->end);
    if (dm == nullptr) {
      return true;
    }
    void** userdata = nullptr;
    dwfl_module_info(dm, &userdata, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    if (userdata != nullptr) {
      *userdata = m.get();
    }
    m_modules.push_back(std::move(m));
    return true;
  });
}

// libdwfl picks the architecture's unwinding backend from an ELF header: a synthetic one with
// the core's machine, so the choice depends on no module file.
bool Session::attach() {
  if (m_arch.machine == 0) {
    return false;
  }
  m_arch_image.assign(sizeof(Elf64_Ehdr), std::byte{0});
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_CORE;
  eh.e_machine = m_arch.machine;
  eh.e_version = EV_CURRENT;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  std::memcpy(m_arch_image.data(), &eh, sizeof eh);
  m_arch_elf.reset(elf_memory(reinterpret_cast<char*>(m_arch_image.data()), m_arch_image.size()));
  if (!m_arch_elf) {
    return false;
  }
  static const Dwfl_Thread_Callbacks k_thread_callbacks = {
      .next_thread = next_thread,
      .get_thread = nullptr,
      .memory_read = memory_read,
      .set_initial_registers = set_initial_registers,
      .detach = nullptr,
      .thread_detach = nullptr,
  };
  return dwfl_attach_state(m_dwfl.get(), m_arch_elf.get(), 1, &k_thread_callbacks, this);
}

int Session::on_thread(Dwfl_Thread* thread, void* arg) {
  auto* s = static_cast<Session*>(arg);
  const auto i = static_cast<size_t>(dwfl_thread_tid(thread) - 1);
  if (i >= s->m_traces.size() || deadline_passed(s->m_options)) {
    return DWARF_CB_ABORT;
  }
  ThreadTrace& t = s->m_traces[i];
  const ThreadState& state = s->m_facts.thread_states[i];
  t.frames.clear();
  s->m_current = &t;
  s->m_last_sp = 0;
  s->m_last_fp.reset();
  s->m_stopped_by_us = false;
  const int rc = dwfl_thread_getframes(thread, on_frame, s);
  if (rc != 0 && !s->m_stopped_by_us && t.error.empty()) {
    const uint64_t last = t.frames.empty() ? state.pc.value_or(0) : t.frames.back().pc;
    t.error = dwfl_addrmodule(s->m_dwfl.get(), last) == nullptr
                  ? "no module with a verified file at " + hex_u64(last)
                  : std::string("no call-frame information: ") + dwfl_errmsg(-1);
  }
  if (t.frames.empty() && state.pc) {
    Frame f;
    f.pc = *state.pc;
    t.frames.push_back(std::move(f));
  }
  // CFI ran out before the outermost frame (a module without a verified file, JIT code, a
  // corrupt stack): frame pointers, then a validated scan, from where it stopped.
  if (rc != 0 && !s->m_stopped_by_us && t.frames.size() < s->m_options.max_frames) {
    const uint64_t sp = t.frames.size() == 1 && state.sp ? *state.sp : s->m_last_sp;
    s->fall_back(t, sp, s->m_last_fp);
  }
  return DWARF_CB_OK;
}

int Session::on_frame(Dwfl_Frame* frame, void* arg) {
  auto* s = static_cast<Session*>(arg);
  ThreadTrace& t = *s->m_current;
  Dwarf_Addr pc = 0;
  bool activation = false;
  if (!dwfl_frame_pc(frame, &pc, &activation)) {
    return DWARF_CB_ABORT;
  }
  Dwarf_Word sp = 0;
  const bool have_sp = dwfl_frame_reg(frame, s->m_arch.sp_reg, &sp) == 0;
  // Each caller's frame is above its callee's: a stack pointer going down or a (pc, sp) pair
  // repeating is a corrupt stack or a cycle, never a deeper caller. A signal frame may switch
  // to the interrupted stack (sigaltstack), so it may go down once.
  if (!t.frames.empty() && have_sp) {
    const Frame& prev = t.frames.back();
    if ((sp < s->m_last_sp && !activation) || (sp == s->m_last_sp && pc == prev.pc)) {
      s->m_stopped_by_us = true;
      t.error = "stack pointer does not grow; stopped";
      return DWARF_CB_ABORT;
    }
  }
  if (have_sp) {
    s->m_last_sp = sp;
  }
  Dwarf_Word fp = 0;
  if (dwfl_frame_reg(frame, s->m_arch.fp_reg, &fp) == 0) {
    s->m_last_fp = fp;
  } else {
    s->m_last_fp.reset();
  }
  Frame f;
  f.pc = pc;
  f.exact_pc = activation;
  f.trust = FrameTrust::context;
  // The trampoline a handler returns to; libdw steps through it with its CFI (glibc's
  // __restore_rt describes the registers the kernel saved), into the interrupted frame.
  f.signal_frame = activation && s->is_sigreturn(pc);
  if (!t.frames.empty()) {
    // libdwfl's x86_64 backend falls back to the frame-pointer chain, silently, where the
    // callee has no CFI: call such a frame what it is, and keep it only when a call
    // instruction precedes its return address.
    const Frame& callee = t.frames.back();
    f.trust = s->has_cfi(callee.exact_pc ? callee.pc : callee.pc - 1) ? FrameTrust::cfi
                                                                      : FrameTrust::frame_pointer;
    // JIT code (V8, CPython's perf trampolines) has no CFI but keeps the frame-pointer chain,
    // and its bytes are not in the module files: a return address into anonymous executable
    // memory is taken on the chain alone, which libdwfl read from the stack windows (so every
    // fp was inside them) with the stack pointer growing (checked above).
    if (f.trust == FrameTrust::frame_pointer && !s->follows_call(pc) &&
        !anonymous_code_at(s->m_facts, pc)) {
      // Not stopped_by_us: the stack scan may still find the real caller.
      t.error = "frame pointer leads to " + hex_u64(pc) + ", not after a call";
      return DWARF_CB_ABORT;
    }
  }
  t.frames.push_back(std::move(f));
  if (t.frames.size() >= s->m_options.max_frames || deadline_passed(s->m_options)) {
    s->m_stopped_by_us = true;
    return DWARF_CB_ABORT;
  }
  return DWARF_CB_OK;
}

// Whether a verified module has call-frame information for `pc` (.eh_frame, else .debug_frame).
bool Session::has_cfi(uint64_t pc) const {
  Dwfl_Module* mod = m_dwfl ? dwfl_addrmodule(m_dwfl.get(), pc) : nullptr;
  if (mod == nullptr) {
    return false;
  }
  for (auto* get : {dwfl_module_eh_cfi, dwfl_module_dwarf_cfi}) {
    Dwarf_Addr bias = 0;
    Dwarf_CFI* cfi = get(mod, &bias);
    Dwarf_Frame* frame = nullptr;
    if (cfi != nullptr && dwarf_cfi_addrframe(cfi, pc - bias, &frame) == 0) {
      std::free(frame); // NOLINT(cppcoreguidelines-no-malloc): libdw allocates it with malloc
      return true;
    }
  }
  return false;
}

// `out.size()` bytes of code at `addr`, read from the verified module file through the PT_LOAD
// that maps them; false when they are not all there.
bool Session::code_bytes(uint64_t addr, std::span<uint8_t> out) const {
  Dwfl_Module* mod = m_dwfl ? dwfl_addrmodule(m_dwfl.get(), addr) : nullptr;
  GElf_Addr bias = 0;
  Elf* elf = mod != nullptr ? dwfl_module_getelf(mod, &bias) : nullptr;
  size_t phnum = 0;
  if (elf == nullptr || addr < bias || elf_getphdrnum(elf, &phnum) != 0) {
    return false;
  }
  const uint64_t vaddr = addr - bias;
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph{};
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr || ph.p_type != PT_LOAD ||
        (ph.p_flags & PF_X) == 0 || vaddr < ph.p_vaddr || vaddr - ph.p_vaddr >= ph.p_filesz ||
        ph.p_filesz - (vaddr - ph.p_vaddr) < out.size()) {
      continue;
    }
    Elf_Data* d = elf_getdata_rawchunk(
        elf, static_cast<int64_t>(ph.p_offset + (vaddr - ph.p_vaddr)), out.size(), ELF_T_BYTE);
    if (d == nullptr || d->d_size != out.size()) {
      return false;
    }
    std::memcpy(out.data(), d->d_buf, out.size());
    return true;
  }
  return false;
}

// Whether `pc` is the kernel's signal return trampoline, by its code as gdb tells it (a
// stripped libc has no __restore_rt symbol): x86-64 `mov $15,%rax; syscall`, AArch64
// `mov x8,#139; svc #0`.
bool Session::is_sigreturn(uint64_t pc) const {
  std::array<uint8_t, 9> code{};
  if (m_arch.machine == EM_AARCH64) {
    static constexpr std::array<uint8_t, 8> k_a64 = {0x68, 0x11, 0x80, 0xd2,
                                                     0x01, 0x00, 0x00, 0xd4};
    return code_bytes(pc, std::span(code).first(8)) &&
           std::equal(k_a64.begin(), k_a64.end(), code.begin());
  }
  static constexpr std::array<uint8_t, 9> k_x64 = {0x48, 0xc7, 0xc0, 0x0f, 0x00,
                                                   0x00, 0x00, 0x0f, 0x05};
  return code_bytes(pc, code) && code == k_x64;
}

// Whether the instruction before `ret` is a call, read from the verified module file: what
// makes a stack word a return address rather than a stale pointer into code.
bool Session::follows_call(uint64_t ret) const {
  Dwfl_Module* mod = m_dwfl ? dwfl_addrmodule(m_dwfl.get(), ret) : nullptr;
  if (mod == nullptr || ret < 8) {
    return false;
  }
  GElf_Addr bias = 0;
  Elf* elf = dwfl_module_getelf(mod, &bias);
  if (elf == nullptr) {
    return false;
  }
  // The file offset of ret − 8 through the PT_LOAD that maps it.
  size_t phnum = 0;
  if (elf_getphdrnum(elf, &phnum) != 0) {
    return false;
  }
  const uint64_t vaddr = ret - 8 - bias;
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph{};
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr || ph.p_type != PT_LOAD ||
        (ph.p_flags & PF_X) == 0 || vaddr < ph.p_vaddr || vaddr - ph.p_vaddr + 8 > ph.p_filesz) {
      continue;
    }
    Elf_Data* d = elf_getdata_rawchunk(
        elf, static_cast<int64_t>(ph.p_offset + (vaddr - ph.p_vaddr)), 8, ELF_T_BYTE);
    if (d == nullptr || d->d_size != 8) {
      return false;
    }
    const auto* b = static_cast<const uint8_t*>(d->d_buf); // b[8] would be at ret
    if (m_arch.machine == EM_AARCH64) {
      uint32_t insn = 0;
      std::memcpy(&insn, b + 4, 4);
      return (insn & 0xfc000000u) == 0x94000000u || (insn & 0xfffffc1fu) == 0xd63f0000u;
    }
    // call rel32 (e8), and the indirect forms ff /2 with 2 to 7 bytes of operand encoding.
    if (b[3] == 0xe8) {
      return true;
    }
    for (int len = 2; len <= 7; ++len) {
      const uint8_t op = b[8 - len];
      const uint8_t modrm = b[8 - len + 1];
      if (op == 0xff && ((modrm >> 3) & 7) == 2) {
        return true;
      }
    }
    return false;
  }
  return false;
}

void Session::fall_back(ThreadTrace& t, uint64_t sp, std::optional<uint64_t> fp) {
  const size_t before = t.frames.size();
  // The frame-pointer chain: [fp] is the caller's fp and [fp + 8] the return address, on x86_64
  // and aarch64 alike; each fp must be above the previous one.
  uint64_t floor = sp;
  while (fp && *fp >= floor && t.frames.size() < m_options.max_frames &&
         !deadline_passed(m_options)) {
    const auto next = read_word(*fp);
    const auto ret = *fp <= UINT64_MAX - 8 ? read_word(*fp + 8) : std::nullopt;
    if (!next || !ret || (!follows_call(*ret) && !anonymous_code_at(m_facts, *ret))) {
      break;
    }
    Frame f;
    f.pc = *ret;
    f.trust = FrameTrust::frame_pointer;
    t.frames.push_back(std::move(f));
    floor = *fp + 16;
    fp = *next > *fp ? std::optional(*next) : std::nullopt;
  }
  if (t.frames.size() > before) {
    return;
  }
  // JIT code need not keep frame pointers (CPython 3.12's perf trampolines do not), and its
  // bytes are not in any module file: a word pointing into it is taken only where the
  // process's perf map names the code that holds it — one pass over the map for all of them.
  std::set<uint64_t> jit_returns;
  if (!m_options.perf_map.empty()) {
    std::vector<uint64_t> calls;
    for (size_t i = 0; i < k_max_scan_words && sp <= UINT64_MAX - 8 * i; ++i) {
      const auto v = read_word(sp + 8 * i);
      if (!v) {
        break;
      }
      if (*v > 0 && anonymous_code_at(m_facts, *v)) {
        calls.push_back(*v - 1);
      }
    }
    for (const auto& [call, name] : perf_map_names(m_options.perf_map, calls, m_options.deadline)) {
      jit_returns.insert(call + 1);
    }
  }
  // A bounded scan above sp for words that are return addresses into verified modules.
  for (size_t i = 0; i < k_max_scan_words && t.frames.size() < m_options.max_frames; ++i) {
    if (sp > UINT64_MAX - 8 * i) {
      break;
    }
    const auto v = read_word(sp + 8 * i);
    if (!v) {
      break;
    }
    if (follows_call(*v) || jit_returns.contains(*v)) {
      Frame f;
      f.pc = *v;
      f.trust = FrameTrust::scan;
      t.frames.push_back(std::move(f));
    }
  }
}

// The name gdb shows for a DWARF function: its linkage name demangled (qualified C++ names)
// without the parameter list, else DW_AT_name (both through abstract origins).
std::string dwarf_function_name(Dwarf_Die* die) {
  Dwarf_Attribute space;
  Dwarf_Attribute* a = dwarf_attr_integrate(die, DW_AT_linkage_name, &space);
  if (a == nullptr) {
    a = dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &space);
  }
  if (a != nullptr) {
    if (const char* linkage = dwarf_formstring(a)) {
      std::string name = demangle(std::string_view(linkage, strnlen(linkage, k_max_symbol_name)));
      if (const size_t paren = name.find('('); paren != std::string::npos && paren > 0) {
        name.resize(paren);
      }
      return name;
    }
  }
  const char* n = dwarf_diename(die);
  return n != nullptr ? std::string(n, strnlen(n, k_max_die_name)) : std::string();
}

// DW_AT_call_file/DW_AT_call_line of an inlined subroutine: where its caller called it.
std::optional<SourceLine> call_site(Dwarf_Die* inlined, Dwarf_Die* cudie) {
  Dwarf_Attribute space;
  Dwarf_Word file = 0;
  Dwarf_Word line = 0;
  Dwarf_Attribute* f = dwarf_attr(inlined, DW_AT_call_file, &space);
  if (f == nullptr || dwarf_formudata(f, &file) != 0) {
    return std::nullopt;
  }
  Dwarf_Attribute* l = dwarf_attr(inlined, DW_AT_call_line, &space);
  if (l == nullptr || dwarf_formudata(l, &line) != 0) {
    return std::nullopt;
  }
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (dwarf_getsrcfiles(cudie, &files, &nfiles) != 0 || file >= nfiles) {
    return std::nullopt;
  }
  const char* name = dwarf_filesrc(files, file, nullptr, nullptr);
  if (name == nullptr) {
    return std::nullopt;
  }
  return SourceLine{std::string(name, strnlen(name, k_max_path)), static_cast<int>(line)};
}

// Module, offset, build-id, symbol and line of a frame, expanded into one frame per inlined
// function at its pc. Callers' frames are looked up at pc − 1: a return address may be the first
// instruction of the next function or line (after a call to a noreturn function).
void Session::describe(Frame f, std::vector<Frame>& out) const {
  const ModuleGroup* group = nullptr;
  if (const FileMapping* m = mapping_at(m_facts, f.pc, &group)) {
    f.module = m->path;
    f.module_offset = f.pc - m->start + m->file_offset;
    if (group != nullptr) {
      f.build_id = group->build_id;
    }
  } else {
    f.jit = anonymous_code_at(m_facts, f.pc);
  }
  Dwfl_Module* mod = m_dwfl ? dwfl_addrmodule(m_dwfl.get(), f.pc) : nullptr;
  void** userdata = nullptr;
  if (mod != nullptr) {
    dwfl_module_info(mod, &userdata, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  }
  const auto* m = userdata != nullptr ? static_cast<const Module*>(*userdata) : nullptr;
  if (m == nullptr || !m->symbolize) {
    out.push_back(std::move(f));
    return;
  }
  const bool exact = f.trust == FrameTrust::context || f.exact_pc || f.pc == 0;
  const uint64_t at = exact ? f.pc : f.pc - 1;
  GElf_Off offset = 0;
  GElf_Sym sym{};
  if (const char* name = dwfl_module_addrinfo(mod, at, &offset, &sym, nullptr, nullptr, nullptr)) {
    f.symbol = ResolvedSymbol{elf_symbol_name(name), offset + (f.pc - at), true};
    f.signal_frame = f.signal_frame || f.symbol->name == "__restore_rt" ||
                     f.symbol->name == "__kernel_rt_sigreturn";
  }
  if (Dwfl_Line* line = dwfl_module_getsrc(mod, at)) {
    int lineno = 0;
    if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
      f.source = SourceLine{std::string(file, strnlen(file, k_max_path)), lineno};
    }
  }
  Dwarf_Addr bias = 0;
  Dwarf_Die* cudie = dwfl_module_addrdie(mod, at, &bias);
  Dwarf_Die* scopes = nullptr;
  const int n = cudie != nullptr ? dwarf_getscopes(cudie, at - bias, &scopes) : 0;
  // Scopes run from the innermost block out to the CU: each inlined subroutine is a frame of
  // its own, called from the next function scope at the inlined subroutine's call site.
  std::optional<SourceLine> next_source;
  bool first = true;
  for (int i = 0; i < n && out.size() < m_options.max_frames; ++i) {
    const int tag = dwarf_tag(&scopes[i]);
    if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine) {
      continue;
    }
    Frame g = f;
    const std::string name = dwarf_function_name(&scopes[i]);
    if (!name.empty()) {
      g.symbol = ResolvedSymbol{name, f.symbol ? f.symbol->offset : 0, true};
    }
    if (!first) {
      g.source = next_source;
    }
    g.inlined = tag == DW_TAG_inlined_subroutine;
    if (g.inlined) {
      next_source = call_site(&scopes[i], cudie);
    }
    first = false;
    out.push_back(std::move(g));
    if (tag == DW_TAG_subprogram) {
      break;
    }
  }
  std::free(scopes); // NOLINT(cppcoreguidelines-no-malloc): dwarf_getscopes allocates with malloc
  if (first) {
    out.push_back(std::move(f));
  }
}

std::vector<ThreadTrace> Session::run() {
  const size_t n = std::min(m_facts.thread_states.size(), m_options.max_threads);
  m_traces.resize(n);
  for (size_t i = 0; i < n; ++i) {
    m_traces[i].tid = m_facts.thread_states[i].tid;
    m_traces[i].crashing = i == 0;
    if (const auto pc = m_facts.thread_states[i].pc) {
      Frame f;
      f.pc = *pc;
      m_traces[i].frames.push_back(std::move(f));
    }
  }
  elf_version(EV_CURRENT);
  m_dwfl.reset(dwfl_begin(&k_callbacks));
  if (m_dwfl) {
    dwfl_report_begin(m_dwfl.get());
    report_modules();
    dwfl_report_end(m_dwfl.get(), nullptr, nullptr);
    if (attach()) {
      dwfl_getthreads(m_dwfl.get(), on_thread, this);
    }
  }
  for (auto& t : m_traces) {
    std::vector<Frame> described;
    for (auto& f : t.frames) {
      if (described.size() >= m_options.max_frames) {
        break;
      }
      if (deadline_passed(m_options)) {
        t.error = t.error.empty() ? "analysis deadline reached" : t.error;
        described.push_back(std::move(f));
        continue;
      }
      describe(std::move(f), described);
    }
    t.frames = std::move(described);
  }
  return std::move(m_traces);
}

} // namespace

std::string_view to_string(FrameTrust trust) {
  switch (trust) {
  case FrameTrust::context:
    return "context";
  case FrameTrust::cfi:
    return "cfi";
  case FrameTrust::frame_pointer:
    return "frame_pointer";
  case FrameTrust::scan:
    return "scan";
  }
  return "scan";
}

std::optional<FrameTrust> frame_trust_from_string(std::string_view s) {
  for (auto t :
       {FrameTrust::context, FrameTrust::cfi, FrameTrust::frame_pointer, FrameTrust::scan}) {
    if (to_string(t) == s) {
      return t;
    }
  }
  return std::nullopt;
}

std::vector<int> AnalysisFiles::fds() const {
  std::vector<int> out;
  for (const auto* files : {&modules, &debug, &alt}) {
    for (const auto& [name, fd] : *files) {
      out.push_back(fd.get());
    }
  }
  return out;
}

AnalysisFiles open_analysis_files(const CoreFacts& facts, const UnwindOptions& options,
                                  const ModuleOpener& open_module) {
  AnalysisFiles out;
  // Other images of each path, for an opener that has no descriptor for a module's own first
  // mapping (at most 4 per path, found in one pass).
  std::map<std::string_view, std::vector<const ModuleGroup*>> others;
  if (open_module) {
    for (const ModuleGroup& g : facts.modules) {
      auto& list = others[g.path];
      if (g.header && g.first < facts.files.size() && list.size() < 5) {
        list.push_back(&g);
      }
    }
  }
  for_each_module(facts, [&](const ModuleGroup& g) {
    if (deadline_passed(options)) {
      return false;
    }
    const FileMapping& first = facts.files[g.first];
    const std::string& id = g.build_id;
    if (out.modules.contains(first.path)) {
      return true; // the same path loaded again (dlmopen): one descriptor serves both
    }
    UniqueFd fd =
        open_module ? open_module(first) : open_module_file(first.path, options.root_fd).fd;
    // The caller's opener may hold one descriptor per file, from its lowest offset-0 mapping
    // (the handler's map_files): that of a copy mapped below the loader's image. The file is
    // checked against this image's identity before any use, so another mapping's is as good.
    if (const auto it = others.find(first.path); !fd && it != others.end()) {
      for (const ModuleGroup* other : it->second) {
        if (other != &g && !fd) {
          fd = open_module(facts.files[other->first]);
        }
      }
    }
    if (!fd) {
      return true;
    }
    out.modules.emplace(first.path, std::move(fd));
    if (id.size() >= 4 && !out.debug.contains(id)) {
      for (const auto& dir : options.debug_dirs) {
        if (UniqueFd debug = open_debug_file(dir, id)) {
          if (UniqueFd alt = open_alt_file(debug.get(), options.debug_dirs)) {
            out.alt.emplace(id, std::move(alt));
          }
          out.debug.emplace(id, std::move(debug));
          break;
        }
      }
    }
    return true;
  });
  // The crash site's module, which analyze_crash() names from the symbol tables when the
  // unwinder could not (it may have no build-id in the core, so no module above).
  if (facts.module && !out.modules.contains(*facts.module)) {
    UniqueFd fd;
    if (!open_module) {
      fd = open_module_file(*facts.module, options.root_fd).fd;
    } else if (const ModuleGroup* g = facts.pc ? module_at(facts, *facts.pc) : nullptr;
               g != nullptr && g->first < facts.files.size()) {
      fd = open_module(facts.files[g->first]); // the loaded image's first mapping
    }
    if (fd) {
      out.modules.emplace(*facts.module, std::move(fd));
    }
  }
  return out;
}

std::vector<ThreadTrace> unwind_threads(const CoreFacts& facts, const UnwindOptions& options) {
  Session s(facts, options);
  return s.run();
}

} // namespace common
