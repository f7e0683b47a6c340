#include "common/crash/symbolize.hpp"

#include "common/base/bytes.hpp"
#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "common/crash/elf_struct.hpp"
#include "common/crash/symbol_name.hpp"
#include "common/record/enum_names.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <set>

namespace common {

namespace {

// What reading one module file may cost. A crasher chooses its mapped files: one ELF file with
// 65535 PT_NOTE headers, mapped through 8 hard links, once kept the handler busy for 40 s. The
// build-id is in the first note segment of every real module; a file gets a few segments and a
// few KiB of notes, and each (device, inode) is read once per crash.
constexpr uint64_t k_max_note_bytes = 64u << 10; // notes read per file, all segments together
constexpr unsigned k_max_note_segments = 4;      // PT_NOTE segments looked at per file
constexpr uint64_t k_max_phdrs = 1024;           // program headers per file (real ones: < 20)
constexpr uint64_t k_max_table = 4u << 20;       // section header table
constexpr uint64_t k_max_symbols = 4u << 20;     // entries scanned per symbol table
constexpr size_t k_symbol_batch = 2730;          // 64 KiB of Elf64_Sym per read
constexpr size_t k_max_name = 4096;              // symbol name bytes
constexpr size_t k_max_checked_files = 4096;
// What all mapped files of one crash may cost together: a few hundred real modules read a few
// KiB each; hostile ones stop the checks here instead of running for hours.
constexpr uint64_t k_max_mapped_bytes = 16u << 20;

// File systems whose reads may block indefinitely (a hung server, a malicious FUSE daemon).
bool is_remote(const struct statfs& fs) {
  constexpr long k_fuse = 0x65735546, k_nfs = 0x6969, k_cifs = 0xff534d42, k_smb2 = 0xfe534d42,
                 k_9p = 0x01021997, k_ceph = 0x00c36400, k_afs = 0x5346414f;
  for (long magic : {k_fuse, k_nfs, k_cifs, k_smb2, k_9p, k_ceph, k_afs}) {
    if (static_cast<long>(fs.f_type) == magic) {
      return true;
    }
  }
  return false;
}

// A read-only ELF64 little-endian file, read with bounded preads.
class ElfFile {
public:
  bool open(const std::string& path, int root_fd) {
    ModuleFile f = open_module_file(path, root_fd);
    m_errno = f.error;
    return f.fd && adopt(std::move(f.fd), f.st);
  }

  // Reads the file open on `fd` (whoever opened it checked what it is), as open() does.
  bool adopt(UniqueFd fd, const struct stat& st) {
    m_fd = std::move(fd);
    m_size = static_cast<uint64_t>(st.st_size);
    m_mtime = st.st_mtim;
    m_dev = static_cast<uint64_t>(st.st_dev);
    m_ino = static_cast<uint64_t>(st.st_ino);
    return read(0, std::as_writable_bytes(std::span(&m_ehdr, 1))) && is_elf64_le(m_ehdr.e_ident);
  }

  // Fills `out` from `offset`; false when the file is shorter or unreadable.
  bool read(uint64_t offset, std::span<std::byte> out) const {
    if (m_budget != nullptr) {
      if (*m_budget < out.size()) {
        *m_budget = 0;
        return false;
      }
      *m_budget -= out.size();
    }
    return read_exact_at(m_fd.get(), out, offset).has_value();
  }

  // Reads `size` bytes at `offset` into a new buffer, if size <= limit and the file holds them.
  std::optional<std::vector<std::byte>> read_vec(uint64_t offset, uint64_t size,
                                                 uint64_t limit) const {
    if (size > limit || size > m_size) {
      return std::nullopt;
    }
    std::vector<std::byte> v(static_cast<size_t>(size));
    if (!read(offset, v)) {
      return std::nullopt;
    }
    return v;
  }

  const Elf64_Ehdr& ehdr() const { return m_ehdr; }
  int error() const { return m_errno; }
  const timespec& mtime() const { return m_mtime; }

  // The program header table (at most k_max_phdrs entries), empty when unusable.
  std::vector<Elf64_Phdr> phdrs() const {
    if (m_ehdr.e_phentsize != sizeof(Elf64_Phdr)) {
      return {};
    }
    return read_table<Elf64_Phdr>(m_ehdr.e_phoff, std::min<uint64_t>(m_ehdr.e_phnum, k_max_phdrs),
                                  k_max_phdrs * sizeof(Elf64_Phdr));
  }

  // `count` entries of T at `offset`, if they take at most `limit` bytes and the file holds
  // them; else none.
  template <typename T>
  std::vector<T> read_table(uint64_t offset, uint64_t count, uint64_t limit) const {
    if (count > limit / sizeof(T) || count * sizeof(T) > m_size) {
      return {};
    }
    std::vector<T> v(static_cast<size_t>(count));
    if (!read(offset, std::as_writable_bytes(std::span(v)))) {
      return {};
    }
    return v;
  }

  std::optional<std::string> build_id() const {
    uint64_t note_bytes = 0;
    unsigned segments = 0;
    for (const Elf64_Phdr& ph : phdrs()) {
      if (segments >= k_max_note_segments) {
        break;
      }
      if (ph.p_type != PT_NOTE) {
        continue;
      }
      ++segments;
      if (ph.p_filesz > k_max_note_bytes - note_bytes) {
        break;
      }
      note_bytes += ph.p_filesz;
      if (const auto notes = read_vec(ph.p_offset, ph.p_filesz, k_max_note_bytes)) {
        if (auto id = gnu_build_id_in_notes(*notes)) {
          return id;
        }
      }
    }
    return std::nullopt;
  }

  // Identifies the file whatever the path: hard links and bind mounts of one file are one.
  std::pair<uint64_t, uint64_t> identity() const { return {m_dev, m_ino}; }

  // Makes every later read() draw from `*budget` (bytes) and fail once it is spent.
  void charge_to(uint64_t* budget) { m_budget = budget; }

private:
  UniqueFd m_fd;
  uint64_t m_size = 0;
  timespec m_mtime{};
  uint64_t m_dev = 0;
  uint64_t m_ino = 0;
  uint64_t* m_budget = nullptr;
  int m_errno = 0;
  Elf64_Ehdr m_ehdr{};
};

// The section header table, empty when unusable.
std::vector<Elf64_Shdr> sections(const ElfFile& f) {
  const Elf64_Ehdr& eh = f.ehdr();
  if (eh.e_shoff == 0 || eh.e_shentsize != sizeof(Elf64_Shdr)) {
    return {};
  }
  return f.read_table<Elf64_Shdr>(eh.e_shoff, eh.e_shnum, k_max_table);
}

std::optional<uint64_t> offset_to_vaddr(const ElfFile& f, uint64_t file_offset) {
  for (const Elf64_Phdr& ph : f.phdrs()) {
    if (ph.p_type == PT_LOAD && file_offset >= ph.p_offset &&
        file_offset - ph.p_offset < ph.p_filesz) {
      return ph.p_vaddr + (file_offset - ph.p_offset);
    }
  }
  return std::nullopt;
}

// The best symbol of table `sym` containing `addr`: the smallest, and among equal ones a global
// (aliases such as __GI_abort and abort share a range).
std::optional<Elf64_Sym> find_in_table(const ElfFile& f, const Elf64_Shdr& sym, uint64_t addr) {
  if (sym.sh_entsize != 0 && sym.sh_entsize != sizeof(Elf64_Sym)) {
    return std::nullopt;
  }
  const uint64_t count = std::min<uint64_t>(sym.sh_size / sizeof(Elf64_Sym), k_max_symbols);
  std::optional<Elf64_Sym> best;
  std::vector<Elf64_Sym> buf(k_symbol_batch);
  for (uint64_t first = 0; first < count; first += k_symbol_batch) {
    const uint64_t n = std::min<uint64_t>(k_symbol_batch, count - first);
    const std::span<Elf64_Sym> batch(buf.data(), static_cast<size_t>(n));
    if (sym.sh_offset > UINT64_MAX - first * sizeof(Elf64_Sym) ||
        !f.read(sym.sh_offset + first * sizeof(Elf64_Sym), std::as_writable_bytes(batch))) {
      break;
    }
    for (const Elf64_Sym& s : batch) {
      const unsigned type = ELF64_ST_TYPE(s.st_info);
      // Functions, GNU indirect functions, or an untyped symbol with a size (hand-written
      // assembly).
      const bool code = type == STT_FUNC || type == STT_GNU_IFUNC || type == STT_NOTYPE;
      if (!code || s.st_shndx == SHN_UNDEF || s.st_size == 0 || addr < s.st_value ||
          addr - s.st_value >= s.st_size) {
        continue;
      }
      const bool global = ELF64_ST_BIND(s.st_info) == STB_GLOBAL;
      if (!best || s.st_size < best->st_size ||
          (s.st_size == best->st_size && global && ELF64_ST_BIND(best->st_info) != STB_GLOBAL)) {
        best = s;
      }
    }
  }
  return best;
}

} // namespace

ModuleFile open_module_file(const std::string& path, int root_fd) {
  // O_PATH first: a path from the core may name a device, a FIFO or a file on a network or
  // FUSE file system, and merely opening those can have side effects or block forever. Only a
  // regular file on a local file system is then opened for reading, through the O_PATH fd (the
  // same file, whatever happens to the path meanwhile).
  constexpr int k_flags = O_PATH | O_CLOEXEC | O_NOFOLLOW;
  ModuleFile out;
  UniqueFd fd;
  if (root_fd >= 0) {
    open_how how{};
    how.flags = k_flags;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    const std::string rel = path.starts_with('/') ? path.substr(1) : path;
    fd.reset(static_cast<int>(syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how)));
  } else {
    fd.reset(::open(path.c_str(), k_flags));
  }
  if (!fd) {
    out.error = errno;
    return out;
  }
  return reopen_module_file(std::move(fd));
}

ModuleFile reopen_module_file(UniqueFd fd) {
  ModuleFile out;
  struct statfs fs {};
  if (fstat(fd.get(), &out.st) != 0 || !S_ISREG(out.st.st_mode) || fstatfs(fd.get(), &fs) != 0 ||
      is_remote(fs)) {
    return out;
  }
  const std::string proc = "/proc/self/fd/" + std::to_string(fd.get());
  out.fd.reset(::open(proc.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!out.fd) {
    out.error = errno;
  }
  return out;
}

namespace {

std::optional<ResolvedSymbol> resolve_in(const ElfFile& f, uint64_t file_offset,
                                         std::string_view expected_build_id) {
  if (!expected_build_id.empty() && f.build_id() != expected_build_id) {
    return std::nullopt;
  }
  const auto addr = offset_to_vaddr(f, file_offset);
  if (!addr) {
    return std::nullopt;
  }
  const auto secs = sections(f);
  for (const uint32_t wanted : {uint32_t{SHT_SYMTAB}, uint32_t{SHT_DYNSYM}}) {
    const auto sym = std::find_if(secs.begin(), secs.end(),
                                  [&](const Elf64_Shdr& s) { return s.sh_type == wanted; });
    if (sym == secs.end() || sym->sh_link >= secs.size()) {
      continue;
    }
    const Elf64_Shdr& strtab = secs[sym->sh_link];
    const auto match = find_in_table(f, *sym, *addr);
    if (!match || match->st_name >= strtab.sh_size) {
      continue;
    }
    std::vector<std::byte> raw(
        static_cast<size_t>(std::min<uint64_t>(k_max_name, strtab.sh_size - match->st_name)));
    if (strtab.sh_offset > UINT64_MAX - match->st_name) {
      continue;
    }
    // A name near the end of the file reads short: take what is there.
    size_t got = raw.size();
    while (got > 0 && !f.read(strtab.sh_offset + match->st_name, std::span(raw).first(got))) {
      got /= 2;
    }
    std::string name(reinterpret_cast<const char*>(raw.data()), got);
    name = name.substr(0, name.find('\0'));
    if (name.empty()) {
      continue;
    }
    return ResolvedSymbol{demangle(name), *addr - match->st_value, !expected_build_id.empty()};
  }
  return std::nullopt;
}

} // namespace

std::optional<ResolvedSymbol> resolve_symbol(const std::string& path, uint64_t file_offset,
                                             std::string_view expected_build_id, int root_fd) {
  ElfFile f;
  if (!f.open(path, root_fd)) {
    return std::nullopt;
  }
  return resolve_in(f, file_offset, expected_build_id);
}

std::optional<ResolvedSymbol> resolve_symbol_fd(int fd, uint64_t file_offset,
                                                std::string_view expected_build_id) {
  struct stat st {};
  UniqueFd own(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  ElfFile f;
  if (!own || ::fstat(own.get(), &st) != 0 || !f.adopt(std::move(own), st)) {
    return std::nullopt;
  }
  return resolve_in(f, file_offset, expected_build_id);
}

std::optional<std::string> read_build_id(const std::string& path, int root_fd) {
  ElfFile f;
  if (!f.open(path, root_fd)) {
    return std::nullopt;
  }
  return f.build_id();
}

namespace {
constexpr record::EnumNames<FindingKind, 4> k_finding_kinds = {{
    {FindingKind::deleted, "deleted"},
    {FindingKind::missing, "missing"},
    {FindingKind::replaced, "replaced"},
    {FindingKind::modified_after_start, "modified_after_start"},
}};
} // namespace

std::string_view to_string(FindingKind kind) {
  return record::enum_name(k_finding_kinds, kind, "unknown");
}

std::vector<MappingFinding> check_mapped_files(
    std::span<const FileMapping> files, const std::map<std::string, std::string>& build_ids,
    std::optional<std::chrono::system_clock::time_point> process_start, int root_fd) {
  std::vector<MappingFinding> out;
  std::set<std::string_view> seen;
  // Every file read once: the build-id of each (device, inode) already read, by identity.
  std::map<std::pair<uint64_t, uint64_t>, std::optional<std::string>> read_ids;
  uint64_t budget = k_max_mapped_bytes;
  for (const auto& m : files) {
    if (seen.size() >= k_max_checked_files || budget == 0) {
      break;
    }
    if (!seen.insert(m.path).second) {
      continue;
    }
    if (m.path.ends_with(" (deleted)")) {
      out.push_back({m.path, FindingKind::deleted, "unlinked after the process mapped it"});
      continue;
    }
    ElfFile f;
    f.charge_to(&budget);
    const bool elf = f.open(m.path, root_fd);
    if (f.error() == ENOENT) {
      out.push_back({m.path, FindingKind::missing, "no file at this path any more"});
      continue;
    }
    if (const auto id = build_ids.find(m.path); elf && id != build_ids.end()) {
      auto [known, fresh] = read_ids.try_emplace(f.identity());
      if (fresh) {
        known->second = f.build_id();
      }
      const auto& disk = known->second;
      if (disk != id->second) {
        out.push_back(
            {m.path, FindingKind::replaced,
             "build-id on disk " + disk.value_or("(none)") + ", in the process " + id->second});
      }
    }
    if (process_start && f.error() == 0) {
      const auto mtime = std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::seconds(f.mtime().tv_sec) +
              std::chrono::nanoseconds(f.mtime().tv_nsec)));
      if (mtime > *process_start) {
        out.push_back({m.path, FindingKind::modified_after_start,
                       "modified " +
                           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                              mtime - *process_start)
                                              .count()) +
                           " s after the process started"});
      }
    }
  }
  return out;
}

} // namespace common
