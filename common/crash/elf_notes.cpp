#include "common/crash/elf_notes.hpp"

#include "common/base/bytes.hpp"
#include "common/base/hex.hpp"
#include "common/crash/elf_struct.hpp"

#include <signal.h>
#include <sys/procfs.h>

#include <algorithm>
#include <array>
#include <utility>

namespace common {

namespace {

constexpr uint64_t align4(uint64_t n) {
  return (n + 3) & ~uint64_t{3};
}

// Bytes of an owner name we keep; every owner we act on is shorter ("CORE", "LINUX", "GNU").
constexpr uint64_t k_max_name = 64;

std::string_view name_of(std::span<const std::byte> name) {
  std::string_view s(reinterpret_cast<const char*>(name.data()), name.size());
  return s.substr(0, s.find('\0'));
}

// Bytes of a fixed-size char field up to its first NUL.
std::string c_field(std::span<const std::byte> desc, size_t offset, size_t size) {
  if (offset > desc.size()) {
    return {};
  }
  const auto field = desc.subspan(offset, std::min(size, desc.size() - offset));
  return std::string(name_of(field));
}

// The kernel's LP64 note layouts (struct elf_prstatus, elf_prpsinfo, siginfo_t), the same on
// x86_64 and aarch64 up to pr_reg. Named from <sys/procfs.h> and <signal.h>; the values are
// pinned because a core's layout is the crasher's architecture, not necessarily ours.
constexpr uint64_t k_prstatus_signo = offsetof(elf_prstatus, pr_info.si_signo);
constexpr uint64_t k_prstatus_cursig = offsetof(elf_prstatus, pr_cursig);
constexpr uint64_t k_prstatus_pid = offsetof(elf_prstatus, pr_pid);
constexpr uint64_t k_prstatus_ppid = offsetof(elf_prstatus, pr_ppid);
constexpr uint64_t k_prstatus_reg = offsetof(elf_prstatus, pr_reg);
static_assert(k_prstatus_signo == 0 && k_prstatus_cursig == 12 && k_prstatus_pid == 32 &&
              k_prstatus_ppid == 36 && k_prstatus_reg == 112);
constexpr uint64_t k_siginfo_signo = offsetof(siginfo_t, si_signo);
constexpr uint64_t k_siginfo_errno = offsetof(siginfo_t, si_errno);
constexpr uint64_t k_siginfo_code = offsetof(siginfo_t, si_code);
constexpr uint64_t k_siginfo_addr = offsetof(siginfo_t, si_addr);
constexpr uint64_t k_siginfo_pid = offsetof(siginfo_t, si_pid);
constexpr uint64_t k_siginfo_uid = offsetof(siginfo_t, si_uid);
constexpr uint64_t k_siginfo_syscall = offsetof(siginfo_t, si_syscall);
constexpr uint64_t k_siginfo_arch = offsetof(siginfo_t, si_arch);
static_assert(k_siginfo_syscall == 24 && k_siginfo_arch == 28);
constexpr int k_sys_seccomp = 1; // SYS_SECCOMP
static_assert(k_siginfo_signo == 0 && k_siginfo_errno == 4 && k_siginfo_code == 8 &&
              k_siginfo_addr == 16 && k_siginfo_pid == 16 && k_siginfo_uid == 20);
constexpr uint64_t k_prpsinfo_uid = offsetof(elf_prpsinfo, pr_uid);
constexpr uint64_t k_prpsinfo_gid = offsetof(elf_prpsinfo, pr_gid);
constexpr uint64_t k_prpsinfo_pid = offsetof(elf_prpsinfo, pr_pid);
constexpr uint64_t k_prpsinfo_ppid = offsetof(elf_prpsinfo, pr_ppid);
constexpr uint64_t k_prpsinfo_fname = offsetof(elf_prpsinfo, pr_fname);
constexpr uint64_t k_prpsinfo_psargs = offsetof(elf_prpsinfo, pr_psargs);
static_assert(k_prpsinfo_uid == 16 && k_prpsinfo_gid == 20 && k_prpsinfo_pid == 24 &&
              k_prpsinfo_ppid == 28 && k_prpsinfo_fname == 40 && k_prpsinfo_psargs == 56);
constexpr size_t k_fname_size = sizeof(elf_prpsinfo::pr_fname);   // 16
constexpr size_t k_psargs_size = sizeof(elf_prpsinfo::pr_psargs); // 80

std::optional<int32_t> read_i32(std::span<const std::byte> d, uint64_t off) {
  if (const auto v = read_le<uint32_t>(d, off)) {
    return static_cast<int32_t>(*v);
  }
  return std::nullopt;
}

} // namespace

std::optional<ElfNote> NoteIterator::next() {
  if (m_pos >= m_data.size()) {
    return std::nullopt;
  }
  const auto nh = read_struct<Elf64_Nhdr>(m_data, m_pos);
  // 64-bit arithmetic: the 32-bit sizes cannot overflow it, and the span bounds every read.
  const uint64_t name_at = m_pos + sizeof(Elf64_Nhdr);
  const uint64_t desc_at = name_at + align4(nh ? nh->n_namesz : 0);
  const uint64_t end = desc_at + align4(nh ? nh->n_descsz : 0);
  if (!nh || desc_at + nh->n_descsz > m_data.size()) {
    m_stopped_early = true;
    m_pos = m_data.size();
    return std::nullopt;
  }
  ElfNote note;
  note.name = name_of(m_data.subspan(name_at, nh->n_namesz));
  note.type = nh->n_type;
  note.desc = m_data.subspan(desc_at, nh->n_descsz);
  note.desc_size = nh->n_descsz;
  note.complete = true;
  // A final note may omit its padding; the next call then ends the walk cleanly.
  m_pos = std::min<uint64_t>(end, m_data.size());
  return note;
}

void NoteStream::start_note() {
  static_assert(sizeof(m_header) == sizeof(Elf64_Nhdr));
  const Elf64_Nhdr nh = read_struct<Elf64_Nhdr>(m_header, 0).value();
  m_namesz = nh.n_namesz;
  m_descsz = nh.n_descsz;
  m_type = nh.n_type;
  m_header_have = 0;
  m_name.clear();
  m_name_pos = 0;
  m_left = align4(m_namesz);
  m_part = Part::name;
}

void NoteStream::emit(NoteSink& sink) {
  ElfNote note;
  note.name = name_of(std::as_bytes(std::span(m_name)));
  note.type = m_type;
  note.desc_size = m_descsz;
  note.complete = m_keep;
  if (m_keep) {
    note.desc = m_desc;
  }
  sink.on_note(note);
  m_desc.clear();
  // Do not keep a large buffer around for the rest of the stream.
  if (m_desc.capacity() > 64 * 1024) {
    std::vector<std::byte>().swap(m_desc);
  }
}

void NoteStream::feed(std::span<const std::byte> bytes, NoteSink& sink) {
  while (!bytes.empty()) {
    if (m_part == Part::header) {
      const size_t n = std::min(bytes.size(), sizeof(m_header) - m_header_have);
      std::copy_n(bytes.begin(), n, m_header + m_header_have);
      m_header_have += n;
      bytes = bytes.subspan(n);
      if (m_header_have == sizeof(m_header)) {
        start_note();
      } else {
        continue;
      }
    }
    if (m_part == Part::name) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), m_left));
      // Keep the first k_max_name bytes of the name proper (not its padding).
      if (m_name_pos < std::min<uint64_t>(m_namesz, k_max_name)) {
        const uint64_t want = std::min<uint64_t>(m_namesz, k_max_name) - m_name_pos;
        const size_t take = static_cast<size_t>(std::min<uint64_t>(want, n));
        m_name.append(reinterpret_cast<const char*>(bytes.data()), take);
      }
      m_name_pos += n;
      m_left -= n;
      bytes = bytes.subspan(n);
      if (m_left != 0) {
        continue;
      }
      const std::string_view owner = name_of(std::as_bytes(std::span(m_name)));
      // A name longer than k_max_name is nobody we know: do not buffer for it.
      const bool wanted = m_namesz <= k_max_name && sink.want(owner, m_type);
      m_keep = wanted && m_descsz <= m_max_desc;
      if (wanted && !m_keep) {
        ++m_oversized;
      }
      m_left = m_descsz;
      m_part = Part::desc;
    }
    if (m_part == Part::desc) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), m_left));
      if (m_keep) {
        m_desc.insert(m_desc.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
      }
      m_left -= n;
      bytes = bytes.subspan(n);
      if (m_left != 0) {
        continue;
      }
      emit(sink);
      m_left = align4(m_descsz) - m_descsz;
      m_part = Part::pad;
    }
    if (m_part == Part::pad) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), m_left));
      m_left -= n;
      bytes = bytes.subspan(n);
      if (m_left == 0) {
        m_part = Part::header;
      }
    }
  }
}

std::optional<PrStatus> decode_prstatus(std::span<const std::byte> desc, uint16_t machine) {
  // struct elf_prstatus (LP64): si_signo@0, pr_cursig@12, pr_pid@32, pr_ppid@36, pr_reg@112.
  constexpr uint64_t k_reg = k_prstatus_reg;
  const auto signo = read_i32(desc, k_prstatus_signo);
  const auto cursig = read_le<uint16_t>(desc, k_prstatus_cursig);
  const auto pid = read_i32(desc, k_prstatus_pid);
  const auto ppid = read_i32(desc, k_prstatus_ppid);
  if (!signo || !cursig || !pid || !ppid) {
    return std::nullopt;
  }
  PrStatus p;
  p.si_signo = *signo;
  p.cursig = static_cast<int16_t>(*cursig);
  p.pid = *pid;
  p.ppid = *ppid;
  if (machine == EM_X86_64) {
    // user_regs_struct: rip is index 16, rsp index 19.
    p.pc = read_le<uint64_t>(desc, k_reg + 16 * 8);
    p.sp = read_le<uint64_t>(desc, k_reg + 19 * 8);
  } else if (machine == EM_AARCH64) {
    // user_pt_regs: regs[31] (x30 = lr), then sp (index 31), pc (index 32).
    p.lr = read_le<uint64_t>(desc, k_reg + 30 * 8);
    p.sp = read_le<uint64_t>(desc, k_reg + 31 * 8);
    p.pc = read_le<uint64_t>(desc, k_reg + 32 * 8);
  }
  const size_t nregs = machine == EM_X86_64 ? 27 : machine == EM_AARCH64 ? 34 : 0;
  if (nregs > 0 && desc.size() >= k_reg + nregs * 8) {
    p.gregs.reserve(nregs);
    for (size_t i = 0; i < nregs; ++i) {
      p.gregs.push_back(read_le<uint64_t>(desc, k_reg + i * 8).value_or(0));
    }
  }
  return p;
}

std::optional<SigInfo> decode_siginfo(std::span<const std::byte> desc) {
  const auto signo = read_i32(desc, k_siginfo_signo);
  const auto err = read_i32(desc, k_siginfo_errno);
  const auto code = read_i32(desc, k_siginfo_code);
  if (!signo || !err || !code) {
    return std::nullopt;
  }
  SigInfo s;
  s.signo = *signo;
  s.err = *err;
  s.code = *code;
  const bool fault_signal = s.signo == SIGILL || s.signo == SIGTRAP || s.signo == SIGBUS ||
                            s.signo == SIGFPE || s.signo == SIGSEGV;
  if (fault_signal && s.code > 0 && s.code != SI_KERNEL) {
    // Raised by the kernel for a fault: si_addr is meaningful. (SI_KERNEL, e.g. a general
    // protection fault, carries 0 there, which would read as a NULL dereference.)
    s.fault_address = read_le<uint64_t>(desc, k_siginfo_addr);
  } else if (s.code == SI_USER || s.code == SI_TKILL || s.code == SI_QUEUE || s.code == SI_MESGQ) {
    // kill(), tgkill() (raise/abort), sigqueue(), mq_notify: si_pid/si_uid of the sender.
    s.sender_pid = read_i32(desc, k_siginfo_pid);
    s.sender_uid = read_le<uint32_t>(desc, k_siginfo_uid);
  } else if (s.signo == SIGSYS && s.code == k_sys_seccomp) {
    // si_call_addr, then si_syscall and si_arch.
    s.syscall = read_i32(desc, k_siginfo_syscall);
    s.syscall_arch = read_le<uint32_t>(desc, k_siginfo_arch);
  }
  return s;
}

std::optional<PrPsInfo> decode_prpsinfo(std::span<const std::byte> desc) {
  // struct elf_prpsinfo (136 B): uid@16, gid@20, pid@24, ppid@28, fname@40[16], psargs@56[80].
  const auto uid = read_le<uint32_t>(desc, k_prpsinfo_uid);
  const auto gid = read_le<uint32_t>(desc, k_prpsinfo_gid);
  const auto pid = read_i32(desc, k_prpsinfo_pid);
  const auto ppid = read_i32(desc, k_prpsinfo_ppid);
  if (!uid || !gid || !pid || !ppid) {
    return std::nullopt;
  }
  PrPsInfo p;
  p.uid = *uid;
  p.gid = *gid;
  p.pid = *pid;
  p.ppid = *ppid;
  p.fname = c_field(desc, k_prpsinfo_fname, k_fname_size);
  p.psargs = c_field(desc, k_prpsinfo_psargs, k_psargs_size);
  while (!p.psargs.empty() && p.psargs.back() == ' ') {
    p.psargs.pop_back();
  }
  return p;
}

AuxvFacts decode_auxv(std::span<const std::byte> desc) {
  AuxvFacts a;
  for (uint64_t off = 0; off + sizeof(Elf64_auxv_t) <= desc.size(); off += sizeof(Elf64_auxv_t)) {
    const Elf64_auxv_t entry = read_struct<Elf64_auxv_t>(desc, off).value();
    const uint64_t value = entry.a_un.a_val;
    switch (entry.a_type) {
    case AT_NULL:
      return a;
    case AT_PAGESZ:
      a.at_pagesz = value;
      break;
    case AT_ENTRY:
      a.at_entry = value;
      break;
    case AT_SYSINFO_EHDR:
      a.at_sysinfo_ehdr = value;
      break;
    case AT_UID:
      a.at_uid = value;
      break;
    case AT_EUID:
      a.at_euid = value;
      break;
    case AT_GID:
      a.at_gid = value;
      break;
    case AT_EGID:
      a.at_egid = value;
      break;
    case AT_SECURE:
      a.at_secure = value;
      break;
    default:
      break;
    }
  }
  return a;
}

NtFile decode_nt_file(std::span<const std::byte> desc) {
  NtFile f;
  const auto count = read_le<uint64_t>(desc, 0);
  const auto page_size = read_le<uint64_t>(desc, 8);
  if (!count || !page_size) {
    f.error = "NT_FILE shorter than its header";
    return f;
  }
  f.page_size = *page_size;
  if (*page_size == 0 || (*page_size & (*page_size - 1)) != 0 || *page_size > (1u << 30)) {
    f.error = "NT_FILE page size " + std::to_string(*page_size) + " is not a power of two";
    return f;
  }
  // Each entry needs 24 bytes plus at least one name byte; checking against the descriptor
  // size also bounds the allocation below by the input size.
  if (*count > (desc.size() - 16) / 25) {
    f.error = "NT_FILE count " + std::to_string(*count) + " does not fit its descriptor";
    return f;
  }
  const uint64_t names_at = 16 + *count * 24;
  std::string_view names(reinterpret_cast<const char*>(desc.data()) + names_at,
                         desc.size() - names_at);
  f.mappings.reserve(static_cast<size_t>(*count));
  for (uint64_t i = 0; i < *count; ++i) {
    const uint64_t at = 16 + i * 24;
    FileMapping m;
    m.start = read_le<uint64_t>(desc, at).value_or(0);
    m.end = read_le<uint64_t>(desc, at + 8).value_or(0);
    const uint64_t pages = read_le<uint64_t>(desc, at + 16).value_or(0);
    const size_t nul = names.find('\0');
    const std::string_view name = names.substr(0, nul);
    names = nul == std::string_view::npos ? std::string_view() : names.substr(nul + 1);
    m.path = std::string(name.substr(0, k_max_path));
    if (m.end < m.start || pages > UINT64_MAX / *page_size) {
      if (f.error.empty()) {
        f.error = "NT_FILE entry with an impossible range or offset dropped";
      }
      continue;
    }
    m.file_offset = pages * *page_size;
    f.mappings.push_back(std::move(m));
  }
  return f;
}

std::optional<std::string> find_gnu_build_id(std::span<const std::byte> image) {
  const auto eh = read_struct<Elf64_Ehdr>(image, 0);
  if (!eh || !is_elf64_le(eh->e_ident) || eh->e_phentsize != sizeof(Elf64_Phdr) ||
      eh->e_phoff > image.size()) {
    return std::nullopt;
  }
  for (uint64_t i = 0; i < eh->e_phnum; ++i) {
    const auto ph = read_struct<Elf64_Phdr>(image, eh->e_phoff + i * sizeof(Elf64_Phdr));
    if (!ph) {
      break; // the table runs past what we have
    }
    if (ph->p_type != PT_NOTE || ph->p_offset >= image.size()) {
      continue;
    }
    // Notes partly outside the window are walked as far as they are inside it.
    if (auto id = gnu_build_id_in_notes(image.subspan(
            ph->p_offset, std::min<uint64_t>(ph->p_filesz, image.size() - ph->p_offset)))) {
      return id;
    }
  }
  return std::nullopt;
}

std::optional<std::string> gnu_build_id_in_notes(std::span<const std::byte> notes) {
  NoteIterator it(notes);
  while (const auto note = it.next()) {
    if (note->name == ELF_NOTE_GNU && note->type == NT_GNU_BUILD_ID && !note->desc.empty()) {
      // Build-ids are 8–20 bytes in practice; 64 bounds what a hostile image can make us print.
      return hex_bytes(note->desc.first(std::min<size_t>(note->desc.size(), 64)));
    }
  }
  return std::nullopt;
}

std::optional<std::string> go_build_id_in_notes(std::span<const std::byte> notes) {
  constexpr uint32_t k_go_build_id = 4;
  constexpr size_t k_max_go_id = 128;
  NoteIterator it(notes);
  while (const auto note = it.next()) {
    if (note->name != "Go" || note->type != k_go_build_id || note->desc.empty() ||
        note->desc.size() > k_max_go_id) {
      continue;
    }
    std::string id(reinterpret_cast<const char*>(note->desc.data()), note->desc.size());
    if (std::ranges::all_of(id, [](char c) { return c > 0x20 && c < 0x7f; })) {
      return id;
    }
  }
  return std::nullopt;
}

ElfImage read_elf_image(std::span<const std::byte> image) {
  ElfImage out;
  const auto eh = read_struct<Elf64_Ehdr>(image, 0);
  if (!eh || !is_elf64_le(eh->e_ident)) {
    return out;
  }
  out.elf = true;
  if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > image.size()) {
    return out;
  }
  for (uint64_t i = 0; i < eh->e_phnum; ++i) {
    const auto ph = read_struct<Elf64_Phdr>(image, eh->e_phoff + i * sizeof(Elf64_Phdr));
    if (!ph) {
      break; // the table runs past what we have
    }
    if (ph->p_type == PT_LOAD && out.loads.size() < k_max_image_loads) {
      out.loads.push_back({ph->p_vaddr, ph->p_offset, ph->p_filesz, ph->p_flags});
    }
    if (ph->p_type != PT_NOTE || ph->p_offset >= image.size()) {
      continue;
    }
    // Notes partly outside the window are walked as far as they are inside it.
    const auto notes =
        image.subspan(ph->p_offset, std::min<uint64_t>(ph->p_filesz, image.size() - ph->p_offset));
    if (out.gnu_build_id.empty()) {
      out.gnu_build_id = gnu_build_id_in_notes(notes).value_or("");
    }
    if (out.go_build_id.empty()) {
      out.go_build_id = go_build_id_in_notes(notes).value_or("");
    }
  }
  return out;
}

std::string_view si_code_name(int signo, int code) {
  // Generic codes (<= 0 and SI_KERNEL) mean the same for every signal: who sent it.
  switch (code) {
  case 0:
    return "SI_USER";
  case 0x80:
    return "SI_KERNEL";
  case -1:
    return "SI_QUEUE";
  case -2:
    return "SI_TIMER";
  case -3:
    return "SI_MESGQ";
  case -4:
    return "SI_ASYNCIO";
  case -5:
    return "SI_SIGIO";
  case -6:
    return "SI_TKILL";
  case -7:
    return "SI_DETHREAD";
  case -60:
    return "SI_ASYNCNL";
  default:
    break;
  }
  using Names = std::span<const std::string_view>;
  static constexpr std::string_view k_ill[] = {"ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR",
                                               "ILL_ILLTRP", "ILL_PRVOPC", "ILL_PRVREG",
                                               "ILL_COPROC", "ILL_BADSTK", "ILL_BADIADDR"};
  static constexpr std::string_view k_fpe[] = {
      "FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND",
      "FPE_FLTRES", "FPE_FLTINV", "FPE_FLTSUB", "FPE_DECOVF", "FPE_DECDIV",
      "FPE_DECERR", "FPE_INVASC", "FPE_INVDEC", "FPE_FLTUNK", "FPE_CONDTRAP"};
  static constexpr std::string_view k_segv[] = {
      "SEGV_MAPERR",  "SEGV_ACCERR",  "SEGV_BNDERR",  "SEGV_PKUERR",  "SEGV_ACCADI",
      "SEGV_ADIDERR", "SEGV_ADIPERR", "SEGV_MTEAERR", "SEGV_MTESERR", "SEGV_CPERR"};
  static constexpr std::string_view k_bus[] = {"BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR",
                                               "BUS_MCEERR_AR", "BUS_MCEERR_AO"};
  static constexpr std::string_view k_trap[] = {"TRAP_BRKPT",  "TRAP_TRACE", "TRAP_BRANCH",
                                                "TRAP_HWBKPT", "TRAP_UNK",   "TRAP_PERF"};
  static constexpr std::string_view k_chld[] = {"CLD_EXITED",  "CLD_KILLED",  "CLD_DUMPED",
                                                "CLD_TRAPPED", "CLD_STOPPED", "CLD_CONTINUED"};
  static constexpr std::string_view k_poll[] = {"POLL_IN",  "POLL_OUT", "POLL_MSG",
                                                "POLL_ERR", "POLL_PRI", "POLL_HUP"};
  static constexpr std::string_view k_sys[] = {"SYS_SECCOMP", "SYS_USER_DISPATCH"};
  Names names;
  switch (signo) {
  case 4:
    names = k_ill;
    break;
  case 8:
    names = k_fpe;
    break;
  case 11:
    names = k_segv;
    break;
  case 7:
    names = k_bus;
    break;
  case 5:
    names = k_trap;
    break;
  case 17:
    names = k_chld;
    break;
  case 29:
    names = k_poll;
    break;
  case 31:
    names = k_sys;
    break;
  default:
    return {};
  }
  if (code < 1 || static_cast<size_t>(code) > names.size()) {
    return {};
  }
  return names[static_cast<size_t>(code) - 1];
}

} // namespace common
