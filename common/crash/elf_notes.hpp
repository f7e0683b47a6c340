// ELF notes of Linux core files and loaded images: bounds-checked iteration and decoding.
//
// Everything here reads from spans of untrusted bytes: lengths are checked before use, reads go
// through memcpy-like byte assembly (no alignment assumptions), and nothing allocates more than
// the input's own size (or a fixed cap). Layouts are LP64 little-endian, as the kernel writes
// them (fs/binfmt_elf.c). No std::expected here on purpose: the fuzz build uses clang 14,
// whose libstdc++ 12 headers do not provide it.
#pragma once

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace common {

// The <elf.h> values the scanner acts on, typed (the parsers use the <elf.h> names directly).
namespace elf {
inline constexpr uint16_t k_em_x86_64 = EM_X86_64;
inline constexpr uint16_t k_em_aarch64 = EM_AARCH64;
inline constexpr uint16_t k_et_core = ET_CORE;
inline constexpr uint32_t k_pt_load = PT_LOAD;
inline constexpr uint32_t k_pt_note = PT_NOTE;
inline constexpr uint32_t k_pf_x = PF_X;
inline constexpr uint32_t k_nt_prstatus = NT_PRSTATUS;
inline constexpr uint32_t k_nt_prpsinfo = NT_PRPSINFO;
inline constexpr uint32_t k_nt_auxv = NT_AUXV;
inline constexpr uint32_t k_nt_siginfo = NT_SIGINFO; // "SIGI"
inline constexpr uint32_t k_nt_file = NT_FILE;       // "FILE"
inline constexpr uint32_t k_nt_gnu_build_id = NT_GNU_BUILD_ID;
} // namespace elf

// One note. `desc` is empty when the descriptor was not kept (see NoteStream); `desc_size` is the
// size the note header claims.
struct ElfNote {
  std::string_view name; // owner, up to the first NUL ("CORE", "LINUX", "GNU")
  uint32_t type = 0;
  std::span<const std::byte> desc;
  uint64_t desc_size = 0;
  bool complete = false; // desc holds all desc_size bytes
};

// Walks the notes of a buffer holding a whole note area (4-byte aligned layout). Stops at the
// first note whose header, name or descriptor does not fit: no descriptor length is trusted.
class NoteIterator {
public:
  explicit NoteIterator(std::span<const std::byte> data) : m_data(data) {}
  // The next complete note, or nullopt at the end (or at the first malformed note).
  std::optional<ElfNote> next();
  // True when iteration stopped before the end of the data (a note did not fit).
  bool stopped_early() const { return m_stopped_early; }

private:
  std::span<const std::byte> m_data;
  uint64_t m_pos = 0;
  bool m_stopped_early = false;
};

// Receives the notes of a NoteStream.
class NoteSink {
public:
  virtual ~NoteSink() = default;
  // Whether the descriptor of a note with this owner and type should be kept for on_note.
  virtual bool want(std::string_view name, uint32_t type) = 0;
  // Called for every note whose header and name arrived, once its descriptor has streamed past.
  virtual void on_note(const ElfNote& note) = 0;
};

// Parses a note area that arrives in pieces of any size. Buffers one descriptor at a time, and
// only when the sink wants it and it is at most `max_desc` bytes; other descriptors are skipped
// by counting. Memory is bounded by max_desc whatever the input claims.
class NoteStream {
public:
  explicit NoteStream(uint64_t max_desc) : m_max_desc(max_desc) {}
  void feed(std::span<const std::byte> bytes, NoteSink& sink);
  // True when the data so far ends inside a note (the area was cut).
  bool mid_note() const { return m_part != Part::header || m_header_have != 0; }
  // Notes whose descriptor was wanted but larger than max_desc.
  uint64_t oversized() const { return m_oversized; }

private:
  enum class Part { header, name, desc, pad };
  void start_note();
  void emit(NoteSink& sink);

  uint64_t m_max_desc;
  Part m_part = Part::header;
  std::byte m_header[12] = {};
  size_t m_header_have = 0;
  uint32_t m_namesz = 0;
  uint32_t m_descsz = 0;
  uint32_t m_type = 0;
  uint64_t m_left = 0;     // bytes left in the current part
  uint64_t m_name_pos = 0; // bytes of the name read so far
  std::string m_name;      // first bytes of the name (bounded)
  bool m_keep = false;     // buffering the current descriptor
  std::vector<std::byte> m_desc;
  uint64_t m_oversized = 0;
};

// NT_PRSTATUS (one per thread; the first is the crashing thread).
struct PrStatus {
  int32_t si_signo = 0;
  int16_t cursig = 0;
  int32_t pid = 0; // the thread id
  int32_t ppid = 0;
  std::optional<uint64_t> pc;
  std::optional<uint64_t> sp;
  std::optional<uint64_t> lr; // aarch64 x30, the return address of a leaf call
  // The general registers of pr_reg in the kernel's order (x86_64 user_regs_struct: 27,
  // aarch64 user_pt_regs: 34); empty for other machines or a short descriptor.
  std::vector<uint64_t> gregs;
};
// Decodes a prstatus for e_machine `machine` (registers only for x86_64 and aarch64).
std::optional<PrStatus> decode_prstatus(std::span<const std::byte> desc, uint16_t machine);

// NT_SIGINFO.
struct SigInfo {
  int32_t signo = 0;
  int32_t err = 0;
  int32_t code = 0;
  std::optional<uint64_t> fault_address; // si_addr, for kernel-raised fault signals only
  std::optional<int32_t> sender_pid;     // for signals sent by kill/tkill/sigqueue
  std::optional<uint32_t> sender_uid;
  // SIGSYS from seccomp (SYS_SECCOMP): the blocked system call's number and AUDIT_ARCH_*.
  std::optional<int32_t> syscall;
  std::optional<uint32_t> syscall_arch;
};
std::optional<SigInfo> decode_siginfo(std::span<const std::byte> desc);

// NT_PRPSINFO.
struct PrPsInfo {
  uint32_t uid = 0; // in the task's own user namespace
  uint32_t gid = 0;
  int32_t pid = 0;
  int32_t ppid = 0;
  std::string fname;  // comm, raw bytes up to the first NUL (at most 16)
  std::string psargs; // raw bytes up to the first NUL (at most 80), trailing spaces trimmed
};
std::optional<PrPsInfo> decode_prpsinfo(std::span<const std::byte> desc);

// NT_AUXV: the entries the record uses.
struct AuxvFacts {
  std::optional<uint64_t> at_secure;
  std::optional<uint64_t> at_uid;
  std::optional<uint64_t> at_euid;
  std::optional<uint64_t> at_gid;
  std::optional<uint64_t> at_egid;
  std::optional<uint64_t> at_pagesz;
  std::optional<uint64_t> at_entry;
  std::optional<uint64_t> at_sysinfo_ehdr; // the vDSO's ELF header
};
AuxvFacts decode_auxv(std::span<const std::byte> desc);

// One NT_FILE entry: [start, end) maps `path` from byte `file_offset` on.
struct FileMapping {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t file_offset = 0; // pages × page_size
  std::string path;         // raw bytes (attacker-controlled), at most k_max_path
};
struct NtFile {
  uint64_t page_size = 0;
  std::vector<FileMapping> mappings;
  std::string error; // why entries were dropped; empty when the note was consistent
};
inline constexpr size_t k_max_path = 4096;
// Decodes NT_FILE. A count that does not fit the descriptor yields no entries (the name table's
// position depends on it, so nothing after it can be trusted); a name without a terminating NUL
// ends at the descriptor's end.
NtFile decode_nt_file(std::span<const std::byte> desc);

// The GNU build-id (hex) of an ELF image whose first bytes (from file offset 0) are `image`:
// reads the ELF header and program headers, then the PT_NOTE segments inside `image`.
std::optional<std::string> find_gnu_build_id(std::span<const std::byte> image);
// The GNU build-id (hex) among the notes of one note area (a PT_NOTE segment's bytes).
std::optional<std::string> gnu_build_id_in_notes(std::span<const std::byte> notes);

// The Go toolchain's build id (the `.note.go.buildid` note: owner "Go", type 4) among the notes
// of one note area; printable ASCII only, at most 128 bytes, else nullopt.
std::optional<std::string> go_build_id_in_notes(std::span<const std::byte> notes);

// What the first bytes of an ELF file (from file offset 0, as a core holds them) say about it:
// its identity notes and its PT_LOAD segments, as far as they lie inside `image`.
struct ElfImage {
  struct Segment {
    uint64_t vaddr = 0;
    uint64_t offset = 0;
    uint64_t filesz = 0;
    uint32_t flags = 0;
  };
  bool elf = false;           // an ELF64 little-endian header
  std::string gnu_build_id;   // hex; empty when absent
  std::string go_build_id;    // see go_build_id_in_notes(); empty when absent
  std::vector<Segment> loads; // PT_LOADs in table order, at most k_max_image_loads
};
inline constexpr size_t k_max_image_loads = 64;
ElfImage read_elf_image(std::span<const std::byte> image);

// The symbolic name of si_code for signal `signo` ("SEGV_MAPERR", "SI_USER" …); empty if unknown.
std::string_view si_code_name(int signo, int code);

} // namespace common
