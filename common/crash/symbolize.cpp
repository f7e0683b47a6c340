#include "common/crash/symbolize.hpp"

#include "common/base/fd.hpp"

#include <cxxabi.h>
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
constexpr size_t k_max_demangle = 1024;          // longer names are printed mangled
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
    // O_PATH first: a path from the core may name a device, a FIFO or a file on a network or
    // FUSE file system, and merely opening those can have side effects or block forever. Only
    // a regular file on a local file system is then opened for reading.
    constexpr int k_flags = O_PATH | O_CLOEXEC | O_NOFOLLOW;
    if (root_fd >= 0) {
      open_how how{};
      how.flags = k_flags;
      how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
      const std::string rel = path.starts_with('/') ? path.substr(1) : path;
      m_fd.reset(static_cast<int>(syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how)));
    } else {
      m_fd.reset(::open(path.c_str(), k_flags));
    }
    m_errno = m_fd ? 0 : errno;
    struct stat st {};
    struct statfs fs {};
    if (!m_fd || fstat(m_fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        fstatfs(m_fd.get(), &fs) != 0 || is_remote(fs)) {
      return false;
    }
    const std::string proc = "/proc/self/fd/" + std::to_string(m_fd.get());
    m_fd.reset(::open(proc.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!m_fd) {
      m_errno = errno;
      return false;
    }
    m_size = static_cast<uint64_t>(st.st_size);
    m_mtime = st.st_mtim;
    m_dev = static_cast<uint64_t>(st.st_dev);
    m_ino = static_cast<uint64_t>(st.st_ino);
    return read(0, m_ehdr) && m_ehdr[0] == std::byte{0x7f} && m_ehdr[1] == std::byte{'E'} &&
           m_ehdr[2] == std::byte{'L'} && m_ehdr[3] == std::byte{'F'} &&
           m_ehdr[4] == std::byte{2} && m_ehdr[5] == std::byte{1};
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
    size_t done = 0;
    while (done < out.size()) {
      if (offset > static_cast<uint64_t>(INT64_MAX) - done) {
        return false;
      }
      const ssize_t n = pread(m_fd.get(), out.data() + done, out.size() - done,
                              static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
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

  std::span<const std::byte> ehdr() const { return m_ehdr; }
  int error() const { return m_errno; }
  const timespec& mtime() const { return m_mtime; }

  // The program header table (Elf64_Phdr entries), empty when unusable.
  std::vector<std::byte> phdrs() const {
    const uint64_t off = read_le<uint64_t>(ehdr(), 32).value_or(0);
    const uint16_t entsize = read_le<uint16_t>(ehdr(), 54).value_or(0);
    const uint16_t num = read_le<uint16_t>(ehdr(), 56).value_or(0);
    if (entsize != 56) {
      return {};
    }
    const uint64_t count = std::min<uint64_t>(num, k_max_phdrs);
    return read_vec(off, count * 56, k_max_phdrs * 56).value_or(std::vector<std::byte>{});
  }

  std::optional<std::string> build_id() const {
    const auto ph = phdrs();
    uint64_t note_bytes = 0;
    unsigned segments = 0;
    for (uint64_t at = 0; at + 56 <= ph.size() && segments < k_max_note_segments; at += 56) {
      if (read_le<uint32_t>(ph, at) != elf::k_pt_note) {
        continue;
      }
      ++segments;
      const uint64_t off = read_le<uint64_t>(ph, at + 8).value_or(0);
      const uint64_t size = read_le<uint64_t>(ph, at + 32).value_or(0);
      if (size > k_max_note_bytes - note_bytes) {
        break;
      }
      note_bytes += size;
      if (const auto notes = read_vec(off, size, k_max_note_bytes)) {
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
  std::array<std::byte, 64> m_ehdr{};
};

struct Section {
  uint32_t type = 0;
  uint32_t link = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t entsize = 0;
};

std::vector<Section> sections(const ElfFile& f) {
  const uint64_t off = read_le<uint64_t>(f.ehdr(), 40).value_or(0);
  const uint16_t entsize = read_le<uint16_t>(f.ehdr(), 58).value_or(0);
  const uint16_t num = read_le<uint16_t>(f.ehdr(), 60).value_or(0);
  if (off == 0 || entsize != 64) {
    return {};
  }
  const auto table = f.read_vec(off, uint64_t{num} * 64, k_max_table);
  std::vector<Section> out;
  for (uint64_t at = 0; table && at + 64 <= table->size(); at += 64) {
    Section s;
    s.type = read_le<uint32_t>(*table, at + 4).value_or(0);
    s.offset = read_le<uint64_t>(*table, at + 24).value_or(0);
    s.size = read_le<uint64_t>(*table, at + 32).value_or(0);
    s.link = read_le<uint32_t>(*table, at + 40).value_or(0);
    s.entsize = read_le<uint64_t>(*table, at + 56).value_or(0);
    out.push_back(s);
  }
  return out;
}

std::optional<uint64_t> offset_to_vaddr(const ElfFile& f, uint64_t file_offset) {
  const auto ph = f.phdrs();
  for (uint64_t at = 0; at + 56 <= ph.size(); at += 56) {
    if (read_le<uint32_t>(ph, at) != elf::k_pt_load) {
      continue;
    }
    const uint64_t off = read_le<uint64_t>(ph, at + 8).value_or(0);
    const uint64_t vaddr = read_le<uint64_t>(ph, at + 16).value_or(0);
    const uint64_t filesz = read_le<uint64_t>(ph, at + 32).value_or(0);
    if (file_offset >= off && file_offset - off < filesz) {
      return vaddr + (file_offset - off);
    }
  }
  return std::nullopt;
}

struct Match {
  uint64_t value = 0;
  uint64_t size = 0;
  uint32_t name = 0;
  int binding = 0;
};

// The best symbol of table `sym` containing `addr`: the smallest, and among equal ones a global
// (aliases such as __GI_abort and abort share a range).
std::optional<Match> find_in_table(const ElfFile& f, const Section& sym, uint64_t addr) {
  constexpr uint64_t k_entsize = 24;
  if (sym.entsize != 0 && sym.entsize != k_entsize) {
    return std::nullopt;
  }
  const uint64_t count = std::min(sym.size / k_entsize, k_max_symbols);
  std::optional<Match> best;
  std::vector<std::byte> buf(k_symbol_batch * k_entsize);
  for (uint64_t first = 0; first < count; first += k_symbol_batch) {
    const uint64_t n = std::min<uint64_t>(k_symbol_batch, count - first);
    const std::span<std::byte> batch(buf.data(), static_cast<size_t>(n * k_entsize));
    if (sym.offset > UINT64_MAX - first * k_entsize ||
        !f.read(sym.offset + first * k_entsize, batch)) {
      break;
    }
    for (uint64_t at = 0; at < batch.size(); at += k_entsize) {
      const uint8_t info = read_le<uint8_t>(batch, at + 4).value_or(0);
      const uint16_t shndx = read_le<uint16_t>(batch, at + 6).value_or(0);
      const uint64_t value = read_le<uint64_t>(batch, at + 8).value_or(0);
      const uint64_t size = read_le<uint64_t>(batch, at + 16).value_or(0);
      const int type = info & 0xf;
      const int binding = info >> 4;
      // STT_FUNC, STT_GNU_IFUNC, or an untyped symbol with a size (hand-written assembly).
      const bool code = type == 2 || type == 10 || (type == 0 && size > 0);
      if (!code || shndx == 0 || size == 0 || addr < value || addr - value >= size) {
        continue;
      }
      if (!best || size < best->size ||
          (size == best->size && binding == 1 && best->binding != 1)) {
        best = Match{value, size, read_le<uint32_t>(batch, at).value_or(0), binding};
      }
    }
  }
  return best;
}

std::string demangle(const std::string& name) {
  if (!name.starts_with("_Z") || name.size() > k_max_demangle) {
    return name;
  }
  int status = 0;
  char* out = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
  std::string result = status == 0 && out != nullptr ? std::string(out) : name;
  std::free(out); // NOLINT(cppcoreguidelines-no-malloc): __cxa_demangle allocates with malloc
  return result;
}

} // namespace

std::optional<ResolvedSymbol> resolve_symbol(const std::string& path, uint64_t file_offset,
                                             std::string_view expected_build_id, int root_fd) {
  ElfFile f;
  if (!f.open(path, root_fd)) {
    return std::nullopt;
  }
  if (!expected_build_id.empty() && f.build_id() != expected_build_id) {
    return std::nullopt;
  }
  const auto addr = offset_to_vaddr(f, file_offset);
  if (!addr) {
    return std::nullopt;
  }
  const auto secs = sections(f);
  for (const uint32_t wanted : {2u /* SHT_SYMTAB */, 11u /* SHT_DYNSYM */}) {
    const auto sym =
        std::find_if(secs.begin(), secs.end(), [&](const Section& s) { return s.type == wanted; });
    if (sym == secs.end() || sym->link >= secs.size()) {
      continue;
    }
    const Section& strtab = secs[sym->link];
    const auto match = find_in_table(f, *sym, *addr);
    if (!match || match->name >= strtab.size) {
      continue;
    }
    std::vector<std::byte> raw(
        static_cast<size_t>(std::min<uint64_t>(k_max_name, strtab.size - match->name)));
    if (strtab.offset > UINT64_MAX - match->name) {
      continue;
    }
    // A name near the end of the file reads short: take what is there.
    size_t got = raw.size();
    while (got > 0 && !f.read(strtab.offset + match->name, std::span(raw).first(got))) {
      got /= 2;
    }
    std::string name(reinterpret_cast<const char*>(raw.data()), got);
    name = name.substr(0, name.find('\0'));
    if (name.empty()) {
      continue;
    }
    return ResolvedSymbol{demangle(name), *addr - match->value, !expected_build_id.empty()};
  }
  return std::nullopt;
}

std::optional<std::string> read_build_id(const std::string& path, int root_fd) {
  ElfFile f;
  if (!f.open(path, root_fd)) {
    return std::nullopt;
  }
  return f.build_id();
}

std::string_view to_string(FindingKind kind) {
  switch (kind) {
  case FindingKind::deleted:
    return "deleted";
  case FindingKind::missing:
    return "missing";
  case FindingKind::replaced:
    return "replaced";
  case FindingKind::modified_after_start:
    return "modified_after_start";
  }
  return "unknown";
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
