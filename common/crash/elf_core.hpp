// The streaming ELF core scanner: the crash facts of a Linux core in one pass over the stream,
// with bounded memory whatever the core's size or content.
//
// What it keeps: the ELF header, one program header at a time (PT_LOADs as 40-byte summaries),
// one note descriptor at a time (≤ 16 MiB), the first ≤ 64 KiB of each file mapping that starts
// at file offset 0 (for its build-id note), and a window of each thread's stack from its sp up:
// ≤ 256 KiB for the crashing thread, ≤ 64 KiB for each other thread, at most 64 threads and
// 4 MiB of stacks in all (the registers of every thread are kept for the unwinder). A kernel
// signal frame in a thread's window (a crash handler on a sigaltstack) adds one window at the
// stack the signal interrupted, from its sp up, within the same 4 MiB (512 KiB of it kept for
// the crashing thread's): when that stack comes later in the stream than the window holding the
// frame, which it does for the main thread (its stack is the highest mapping) and for alternate
// stacks allocated after the thread's stack. For the other order one window for the crashing
// thread is decided from the registers and the mappings when the notes end (see
// keep_unclaimed_stack); a warning says when the interrupted stack was missed.
// Everything else streams past uncounted but for `received`. Hostile, truncated or garbage input
// gives partial facts and a `format_error`/`warnings`, never a crash or an unbounded allocation.
#pragma once

#include "common/crash/capture.hpp"
#include "common/crash/elf_notes.hpp"
#include "common/crash/sigframe.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace common {

// A return-address candidate found on the crashing thread's stack (best effort: any 8-byte
// value above sp that points into executable memory; no unwinding).
struct StackFrame {
  uint64_t address = 0;
  std::string module;                    // NT_FILE path mapped there; empty when anonymous
  std::optional<uint64_t> module_offset; // file offset in `module` (see CoreFacts::module_offset)
};

// One thread of the core (one NT_PRSTATUS), for the unwinder: its registers and the bytes of
// its stack from sp upwards that were dumped (possibly fewer than the window, or none).
struct ThreadState {
  int64_t tid = 0;
  int cursig = 0;
  std::optional<uint64_t> pc;
  std::optional<uint64_t> sp;
  std::vector<uint64_t> gregs; // PrStatus::gregs
  uint64_t stack_base = 0;     // address of stack[0] (== sp when dumped)
  std::vector<std::byte> stack;
  // Kernel signal frames found in the windows above, innermost first (at most
  // k_max_signal_frames), and the window at the stack the innermost one outside `stack`
  // interrupted (empty when that is inside `stack`, or was not kept).
  std::vector<SignalFrame> signal_frames;
  uint64_t interrupted_base = 0;
  std::vector<std::byte> interrupted_stack;
};

// How a module file on disk is recognised as the image the core saw, strongest first: the GNU
// build-id note, the Go toolchain's build id note, or the bytes of the file's first page (ELF
// header, program headers and what follows them) as the core holds them.
enum class ModuleMatch { none, build_id, go_build_id, elf_headers };
std::string_view to_string(ModuleMatch match); // "build-id", "go-build-id", "elf-headers", ""

// The NT_FILE mappings of one file that belong together: a mapping at file offset 0 and the
// mappings of the same path right after it in address order (no other file between them) with
// non-decreasing, non-zero file offsets — the load segments of one ELF image as the loader mapped
// it. A file mapped again (a crash reporter reading its own libraries, dlmopen) is a group of its
// own.
struct ModuleGroup {
  std::string path;
  uint64_t start = 0;      // the first mapping's start (file offset 0 when `header`)
  uint64_t end = 0;        // the last mapping's end
  size_t first = 0;        // index of the first mapping in CoreFacts::files
  size_t count = 0;        // mappings in the group: files[first .. first + count)
  bool header = false;     // the first mapping is at file offset 0
  bool executable = false; // one of its mappings is executable (the core's PT_LOAD flags)
  // The loader's image: the ELF header is at `start` and the group maps the image's PT_LOADs
  // (as the core's copy of the first page lists them; without that copy, an executable
  // mapping). Only these are modules for the unwinder, the symbolizer and the signature.
  bool loaded = false;
  // Identity from the core's copy of the first page (empty when it was not dumped).
  std::string build_id;    // GNU build-id, hex
  std::string go_build_id; // .note.go.buildid
  std::string page_digest; // SHA-256 (hex) of the first `page_bytes` bytes of the image
  uint64_t page_bytes = 0;
  ModuleMatch match() const; // how a file on disk is checked against this image
};

// [start, end) of the crashed process's address space.
struct AddressRange {
  uint64_t start = 0;
  uint64_t end = 0;
  bool operator==(const AddressRange&) const = default;
};
inline constexpr size_t k_max_anonymous_code = 4096;

// Everything the scanner learned. Optional fields are unknown when empty.
struct CoreFacts {
  bool is_elf = false;               // starts with the ELF magic
  std::string format_error;          // why parsing stopped early; empty when the structure was fine
  std::vector<std::string> warnings; // oddities parsing continued past (bounded)
  std::string machine;               // "x86_64", "aarch64", or "EM_<n>"
  uint64_t phnum = 0;                // program headers parsed (the real count also under PN_XNUM)

  // First NT_PRSTATUS: the thread that took the signal.
  std::optional<uint64_t> pc;
  std::optional<uint64_t> sp;
  std::optional<uint64_t> lr; // aarch64 only
  std::optional<int64_t> tid; // its pr_pid (a thread id, in the crasher's pid namespace)
  std::optional<int> cursig;
  uint64_t threads = 0; // NT_PRSTATUS notes seen
  // The first k_max_threads threads in note order: [0] is the crashing thread.
  std::vector<ThreadState> thread_states;

  // NT_SIGINFO.
  std::optional<int> si_signo;
  std::optional<int> si_errno;
  std::optional<int> si_code;
  std::string si_code_name;              // empty when unknown
  std::optional<uint64_t> fault_address; // SEGV/BUS/ILL/FPE/TRAP raised by a fault
  std::optional<int64_t> sender_pid;     // signals sent by kill/tkill/sigqueue
  std::optional<uint32_t> sender_uid;
  std::optional<int> syscall;           // SIGSYS from seccomp: the blocked system call
  std::optional<uint32_t> syscall_arch; // and its AUDIT_ARCH_*

  // NT_PRPSINFO (raw bytes; make them valid UTF-8 before display).
  std::optional<int64_t> pid;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::string fname;
  std::string psargs;

  // NT_AUXV.
  std::optional<uint64_t> at_secure;
  std::optional<uint64_t> at_uid;
  std::optional<uint64_t> at_euid;
  std::optional<uint64_t> at_gid;
  std::optional<uint64_t> at_egid;
  std::optional<uint64_t> at_entry;        // inside the main executable
  std::optional<uint64_t> at_sysinfo_ehdr; // the vDSO

  // NT_FILE, in the kernel's order (ascending start).
  std::vector<FileMapping> files;
  uint64_t file_page_size = 0;
  // Build-ids found in the dumped first page of mapped ELF files: path → lower-case hex (of the
  // path's first loaded module, else of its first group with one).
  std::map<std::string, std::string> build_ids;
  // Every group of `files` (see ModuleGroup), ascending start; file_groups[i] is the group of
  // files[i]. module_at() is the one way to find the module of an address.
  std::vector<ModuleGroup> modules;
  std::vector<size_t> file_groups;
  // Executable PT_LOADs that no NT_FILE mapping covers and that are not the vDSO: code a JIT
  // compiler wrote into anonymous memory (V8, CPython's perf trampolines, the JVM), ascending,
  // at most k_max_anonymous_code of them. See anonymous_code_at().
  std::vector<AddressRange> anonymous_code;

  // Crash site: the NT_FILE entry containing pc. module_offset = pc − start + file_offset, a
  // *file offset*; for GNU ld output (PIE, DSOs) it equals the address `addr2line -e module`
  // takes, otherwise convert through the module's PT_LOADs (resolve_symbol does).
  std::optional<std::string> module;
  std::optional<uint64_t> module_offset;
  std::optional<std::string> build_id; // of `module`
  std::vector<StackFrame> frames;      // best effort, at most 32

  // Stable grouping key (see docs/record-crash.md): 16 hex of SHA-256 over signature_input.
  std::string signature;
  std::string signature_input;

  uint64_t expected_size = 0; // max(p_offset + p_filesz) over the segments (and PN_XNUM shdr)
  uint64_t received = 0;      // bytes observed
  bool truncated = false;     // received < expected_size, or the headers themselves were cut
};

// Observes a core in stream order (chunks of any size, split anywhere), then finish().
// Not copyable or movable (the note parser calls back into it).
class CoreScanner final : public StreamObserver, private NoteSink {
public:
  CoreScanner() = default;
  CoreScanner(const CoreScanner&) = delete;
  CoreScanner& operator=(const CoreScanner&) = delete;

  // Feeds the next bytes of the core. Ignored after finish().
  void observe(std::span<const std::byte> chunk) override;
  // Ends the stream: uses partially received windows and derives the crash site, frames,
  // signature and truncation. Idempotent.
  void finish();
  // The facts; complete only after finish().
  const CoreFacts& facts() const { return m_facts; }
  // False once the rest of the stream holds nothing the scanner would look at (every note,
  // build-id and stack window seen, or the input is not a core): the capture may stop reading.
  bool wants_more() const override;

private:
  enum class Phase { header, phdrs, body, dead };
  enum class RegionKind { notes, build_id, stack, shdr };
  static constexpr size_t k_no_thread = SIZE_MAX;
  struct Load {
    uint64_t vaddr = 0;
    uint64_t memsz = 0;
    uint64_t offset = 0;
    uint64_t filesz = 0;
    uint32_t flags = 0;
  };
  // A byte range of the stream to parse or keep: [begin, end).
  struct Region {
    uint64_t begin = 0;
    uint64_t end = 0;
    RegionKind kind = RegionKind::notes;
    std::string path;            // build_id: the module
    uint64_t start = 0;          // build_id: where the mapping starts
    uint64_t charge = 0;         // bytes counted against the buffer budget while active
    size_t thread = k_no_thread; // stack: index in thread_states
    bool interrupted = false;    // stack: the window at the stack a signal interrupted
    uint64_t address = 0;        // stack: the address of the window's first byte
    std::vector<std::byte> data;
    std::optional<NoteStream> notes;
  };

  bool want(std::string_view name, uint32_t type) override;
  void on_note(const ElfNote& note) override;

  uint64_t next_boundary() const;
  void deliver(std::span<const std::byte> piece);
  void settle();
  void parse_header();
  void parse_phdr();
  void end_phdrs();
  void register_region(Region r);
  void complete_region(Region& r);
  void register_windows();
  void note_signal_frames(size_t index, uint64_t base, std::span<const std::byte> data,
                          bool interrupted);
  void keep_unclaimed_stack();
  const Load* find_load(uint64_t addr) const;
  void derive();
  void fail(std::string why);
  void warn(std::string what);

  CoreFacts m_facts;
  Phase m_phase = Phase::header;
  uint64_t m_pos = 0;
  bool m_finished = false;
  std::array<std::byte, 64> m_ehdr{};

  uint16_t m_machine = 0;
  uint64_t m_phoff = 0;
  uint64_t m_ph_limit = 0; // e_phnum, or the cap under PN_XNUM
  bool m_xnum = false;
  uint64_t m_ph_index = 0;
  uint64_t m_ph_bound = UINT64_MAX;     // PN_XNUM: the table ends before the first data offset
  std::optional<uint64_t> m_xnum_count; // sh_info of section header 0
  std::array<std::byte, 56> m_phdr{};
  std::vector<Load> m_loads; // sorted by vaddr once the table is read
  uint64_t m_note_segments = 0;

  std::vector<Region> m_pending; // sorted by begin, descending (next one at the back)
  bool m_pending_sorted = true;
  std::vector<Region> m_active;
  uint64_t m_active_bytes = 0;
  uint64_t m_windows = 0;
  uint64_t m_notes_end = 0;    // end of the note segment being fed
  uint64_t m_window_floor = 0; // PT_LOAD windows start here or later (see on_note)

  bool m_seen_prstatus = false;
  bool m_seen_siginfo = false;
  bool m_seen_prpsinfo = false;
  bool m_seen_auxv = false;
  bool m_seen_file = false;
  size_t m_stacks_registered = 0;      // thread_states with a stack window decided
  uint64_t m_stack_bytes = 0;          // reserved for stack windows
  std::set<size_t> m_interrupted_kept; // threads with a window at their signal frame's sp
  bool m_unclaimed_decided = false;    // keep_unclaimed_stack() ran
  bool m_build_ids_registered = false;
  std::vector<uint64_t> m_stack_candidates;
  // The first page of each offset-0 mapping the core holds, by the mapping's start.
  struct PageCopy {
    ElfImage image;
    std::string digest;
    uint64_t bytes = 0;
  };
  std::map<uint64_t, PageCopy> m_pages;
  void group_modules();
  void find_anonymous_code();
};

// The NT_FILE mapping containing `addr` (nullptr when none) and, through `group`, the group it
// belongs to. Binary search: finish() sorts `files` by start.
const FileMapping* mapping_at(const CoreFacts& facts, uint64_t addr,
                              const ModuleGroup** group = nullptr);
// The loaded module (ModuleGroup::loaded) containing `addr`, or nullptr: never a stray mapping
// of the same file.
const ModuleGroup* module_at(const CoreFacts& facts, uint64_t addr);

// Whether `pc` lies in anonymous executable memory (CoreFacts::anonymous_code).
bool anonymous_code_at(const CoreFacts& facts, uint64_t pc);

// Groups NT_FILE mappings (sorted by start) into ModuleGroups, without the flags and identity
// only a core gives (`executable`, `loaded`, the identity fields stay unset); fills
// `file_groups`. Used by the scanner and its tests.
std::vector<ModuleGroup> group_mappings(const std::vector<FileMapping>& files,
                                        std::vector<size_t>& file_groups);
// Whether `group` maps the PT_LOAD segments `loads` of its image (from its header) the way a
// loader does: every segment's first page at start + (its vaddr − the first segment's vaddr),
// page-aligned, from the right file offset, and every executable segment in an executable
// mapping (`is_executable(mapping)`).
bool maps_segments(const ModuleGroup& group, const std::vector<FileMapping>& files,
                   std::span<const ElfImage::Segment> loads, uint64_t page_size,
                   const std::function<bool(const FileMapping&)>& is_executable);

// For facts put together by hand (tests, fuzzers): groups `files` (sorted by start) and takes
// every group that starts at file offset 0 with an executable mapping (`is_executable`) as
// loaded, identified by its path's entry in `build_ids`.
void group_modules(CoreFacts& facts, const std::function<bool(const FileMapping&)>& is_executable);

// The file name of a mapped path, without the kernel's " (deleted)" suffix.
std::string module_basename(std::string_view path);

} // namespace common
