#include "common/crash/debug_file.hpp"

#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/crash/elf_notes.hpp"

#include <elf.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace common {

namespace {

constexpr uint64_t k_max_shstrtab = 1u << 20;
constexpr uint64_t k_max_altlink = 4096 + 64; // a path, its NUL and a build-id

// The DWARF sections libdw needs for what the unwinder asks (function names at an address,
// inlined scopes, file:line, CFI): not location lists, macros or name indexes, which are often
// the largest sections and which libdw would inflate for nothing.
constexpr std::array<std::string_view, 13> k_dwarf_sections = {
    ".debug_info",        ".debug_abbrev", ".debug_line",    ".debug_line_str", ".debug_str",
    ".debug_str_offsets", ".debug_addr",   ".debug_aranges", ".debug_ranges",   ".debug_rnglists",
    ".debug_frame",       ".debug_types",  ".debug_cu_index"};

template <typename T>
std::optional<T> pread_struct(int fd, uint64_t offset) {
  T v{};
  if (!read_exact_at(fd, std::as_writable_bytes(std::span(&v, 1)), offset)) {
    return std::nullopt;
  }
  return v;
}

uint64_t align_up(uint64_t n, uint64_t align) {
  return (n + align - 1) & ~(align - 1);
}

// A section's alignment as a power of two between 8 (what libelf needs to use symbol tables in
// place) and a page.
uint64_t placement(uint64_t align) {
  if (align <= 8 || (align & (align - 1)) != 0) {
    return 8;
  }
  return std::min<uint64_t>(align, 4096);
}

struct Plan {
  Elf64_Shdr out{};        // the section header as written into the image
  bool copy = false;       // bytes to copy or inflate (else only the header is kept)
  bool inflate = false;    // SHF_COMPRESSED with zlib: inflate sh_size bytes after the Chdr
  uint64_t src_offset = 0; // where the bytes (or the Chdr) are in the file
  uint64_t src_size = 0;
};

struct Unmap {
  size_t size = 0;
  void operator()(void* p) const { munmap(p, size); }
};

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

// Writes `plans`' sections from `file` into the image: copied, or inflated to exactly the
// declared size (libdeflate checks the zlib stream's checksum and refuses shorter and longer
// output) in a scratch buffer first. A section that does not inflate is dropped, as libdw would
// skip it. False when the image cannot be written.
bool copy_sections(std::span<const std::byte> file, const std::vector<Plan*>& plans, int image) {
  const std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> inflater(
      libdeflate_alloc_decompressor());
  uint64_t largest = 0;
  for (const Plan* p : plans) {
    largest = p->inflate ? std::max(largest, p->out.sh_size) : largest;
  }
  // Written with pwrite rather than through a shared mapping of the memfd: no page of it is
  // zeroed first or mapped twice. The scratch buffer asks for huge pages (a few faults instead
  // of thousands) where the kernel gives them.
  void* scratch = largest > 0 ? mmap(nullptr, largest, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                              : nullptr;
  if (scratch == MAP_FAILED) {
    return false;
  }
  const std::unique_ptr<void, Unmap> owner(scratch, Unmap{largest});
  if (scratch != nullptr) {
    madvise(scratch, largest, MADV_HUGEPAGE);
  }
  for (Plan* p : plans) {
    const auto src = file.subspan(p->src_offset, p->src_size);
    if (!p->inflate) {
      if (!write_all_at(image, src, p->out.sh_offset)) {
        return false;
      }
      continue;
    }
    const std::span dest(static_cast<std::byte*>(scratch), p->out.sh_size);
    if (!inflater || libdeflate_zlib_decompress(inflater.get(), src.data(), src.size(), dest.data(),
                                                dest.size(), nullptr) != LIBDEFLATE_SUCCESS) {
      p->out.sh_type = SHT_NOBITS;
      p->out.sh_offset = 0;
    } else if (!write_all_at(image, dest, p->out.sh_offset)) {
      return false;
    }
  }
  return true;
}

} // namespace

UniqueFd prepare_debug_file(UniqueFd fd, uint64_t max_bytes) {
  struct stat st {};
  if (!fd || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return {};
  }
  const auto file_size = static_cast<uint64_t>(st.st_size);
  const auto as_is = [&]() { return file_size <= max_bytes ? std::move(fd) : UniqueFd(); };
  const auto eh = pread_struct<Elf64_Ehdr>(fd.get(), 0);
  if (!eh || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB) {
    return {};
  }
  // Extended numbering (e_shnum 0, e_shstrndx SHN_XINDEX) and odd entry sizes: left to libelf.
  const uint64_t shnum = eh->e_shnum;
  const uint64_t phnum = eh->e_phnum;
  if (shnum == 0 || eh->e_shstrndx >= shnum || eh->e_shentsize != sizeof(Elf64_Shdr) ||
      (phnum != 0 && eh->e_phentsize != sizeof(Elf64_Phdr)) || eh->e_shoff > file_size ||
      file_size - eh->e_shoff < shnum * sizeof(Elf64_Shdr) ||
      (phnum != 0 &&
       (eh->e_phoff > file_size || file_size - eh->e_phoff < phnum * sizeof(Elf64_Phdr)))) {
    return as_is();
  }
  std::vector<Elf64_Shdr> shdrs(shnum);
  std::vector<Elf64_Phdr> phdrs(phnum);
  if (!read_exact_at(fd.get(), std::as_writable_bytes(std::span(shdrs)), eh->e_shoff) ||
      !read_exact_at(fd.get(), std::as_writable_bytes(std::span(phdrs)), eh->e_phoff)) {
    return {};
  }
  const Elf64_Shdr& strs = shdrs[eh->e_shstrndx];
  if (strs.sh_type != SHT_STRTAB || (strs.sh_flags & SHF_COMPRESSED) != 0 ||
      strs.sh_size > k_max_shstrtab || strs.sh_offset > file_size ||
      file_size - strs.sh_offset < strs.sh_size) {
    return as_is();
  }
  std::vector<char> names(strs.sh_size + 1, '\0'); // NUL-terminated whatever the file says
  if (!read_exact_at(fd.get(), std::as_writable_bytes(std::span(names).first(strs.sh_size)),
                     strs.sh_offset)) {
    return {};
  }

  // The image: ELF header, program headers, the kept sections, the section header table.
  uint64_t size = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
  bool compressed = false;
  std::vector<Plan> plans(shnum);
  for (uint64_t i = 0; i < shnum; ++i) {
    const Elf64_Shdr& sh = shdrs[i];
    Plan& p = plans[i];
    p.out = sh;
    const std::string_view name =
        sh.sh_name < strs.sh_size ? std::string_view(names.data() + sh.sh_name) : "";
    if (name.starts_with(".zdebug_") || name == ".gnu_debugaltlink") {
      return as_is(); // GNU compression; DWARF shared with a DWZ file found by the file's path
    }
    if (sh.sh_type == SHT_NULL || sh.sh_type == SHT_NOBITS) {
      continue;
    }
    const bool wanted = sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_STRTAB ||
                        sh.sh_type == SHT_NOTE || sh.sh_type == SHT_SYMTAB_SHNDX ||
                        std::ranges::find(k_dwarf_sections, name) != k_dwarf_sections.end();
    if (!wanted || sh.sh_offset > file_size || file_size - sh.sh_offset < sh.sh_size) {
      // Kept in the table (symbols refer to sections by index), without contents.
      p.out.sh_type = SHT_NOBITS;
      p.out.sh_offset = 0;
      p.out.sh_flags &= ~static_cast<uint64_t>(SHF_COMPRESSED);
      continue;
    }
    p.copy = true;
    p.src_offset = sh.sh_offset;
    p.src_size = sh.sh_size;
    uint64_t out_size = sh.sh_size;
    uint64_t align = sh.sh_addralign;
    if ((sh.sh_flags & SHF_COMPRESSED) != 0) {
      const auto ch = sh.sh_size >= sizeof(Elf64_Chdr)
                          ? pread_struct<Elf64_Chdr>(fd.get(), sh.sh_offset)
                          : std::nullopt;
      if (!ch || ch->ch_type != ELFCOMPRESS_ZLIB) {
        return as_is(); // zstd (newer toolchains) or garbage: libelf knows or refuses
      }
      compressed = true;
      p.inflate = true;
      p.src_offset += sizeof(Elf64_Chdr);
      p.src_size -= sizeof(Elf64_Chdr);
      out_size = ch->ch_size;
      align = ch->ch_addralign;
      p.out.sh_flags &= ~static_cast<uint64_t>(SHF_COMPRESSED);
      p.out.sh_addralign = align;
    }
    if (out_size > max_bytes) {
      return {};
    }
    size = align_up(size, placement(align));
    p.out.sh_offset = size;
    p.out.sh_size = out_size;
    size += out_size;
    if (size > max_bytes) {
      return {};
    }
  }
  if (!compressed) {
    return as_is(); // nothing to inflate: libelf maps the file and reads it in place
  }
  const uint64_t shoff = align_up(size, 8);
  size = shoff + shnum * sizeof(Elf64_Shdr);
  if (size > max_bytes) {
    return {};
  }

  UniqueFd image(memfd_create("process-core-debug", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!image || ftruncate(image.get(), static_cast<off_t>(size)) != 0) {
    return as_is();
  }
  // The debug file is the host's (found by build-id under root's directories, never a path
  // from the core), so it is mapped, as libdw itself would: the compressed bytes are read in
  // place instead of copied. A crasher's own files are never mapped.
  void* src = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (src == MAP_FAILED) {
    return as_is();
  }
  const std::unique_ptr<void, Unmap> source(src, Unmap{file_size});
  std::vector<Plan*> copies;
  for (Plan& p : plans) {
    if (p.copy) {
      copies.push_back(&p);
    }
  }
  if (!copy_sections(std::span(static_cast<const std::byte*>(src), file_size), copies,
                     image.get())) {
    return as_is();
  }
  Elf64_Ehdr head = *eh;
  head.e_phoff = phnum != 0 ? sizeof(Elf64_Ehdr) : 0;
  head.e_shoff = shoff;
  std::vector<Elf64_Shdr> table;
  for (const Plan& p : plans) {
    table.push_back(p.out);
  }
  if (!write_all_at(image.get(), std::as_bytes(std::span(&head, 1)), 0) ||
      !write_all_at(image.get(), std::as_bytes(std::span(phdrs)), sizeof head) ||
      !write_all_at(image.get(), std::as_bytes(std::span(table)), shoff)) {
    return as_is();
  }
  // Sealed read-only: libdwfl maps it privately and reads what was written here, nothing else.
  if (fcntl(image.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
      0) {
    return as_is();
  }
  return image;
}

namespace {

struct Sections {
  std::vector<Elf64_Shdr> headers;
  std::vector<char> names; // the section name table, NUL-terminated
  uint64_t file_size = 0;

  std::string_view name(const Elf64_Shdr& sh) const {
    return sh.sh_name < names.size() ? std::string_view(names.data() + sh.sh_name)
                                     : std::string_view();
  }
  // The contents of `sh` when it is stored as it is and at most `max` bytes.
  std::optional<std::vector<std::byte>> contents(int fd, const Elf64_Shdr& sh, uint64_t max) const {
    if (sh.sh_type == SHT_NOBITS || (sh.sh_flags & SHF_COMPRESSED) != 0 || sh.sh_size > max ||
        sh.sh_offset > file_size || file_size - sh.sh_offset < sh.sh_size) {
      return std::nullopt;
    }
    std::vector<std::byte> out(sh.sh_size);
    if (!read_exact_at(fd, out, sh.sh_offset)) {
      return std::nullopt;
    }
    return out;
  }
};

// The section header table and names of the ELF64 file on `fd`, bounded as prepare_debug_file's.
std::optional<Sections> read_sections(int fd) {
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  Sections out;
  out.file_size = static_cast<uint64_t>(st.st_size);
  const auto eh = pread_struct<Elf64_Ehdr>(fd, 0);
  if (!eh || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB) {
    return std::nullopt;
  }
  const uint64_t shnum = eh->e_shnum;
  if (shnum == 0 || eh->e_shstrndx >= shnum || eh->e_shentsize != sizeof(Elf64_Shdr) ||
      eh->e_shoff > out.file_size || out.file_size - eh->e_shoff < shnum * sizeof(Elf64_Shdr)) {
    return std::nullopt;
  }
  out.headers.resize(shnum);
  if (!read_exact_at(fd, std::as_writable_bytes(std::span(out.headers)), eh->e_shoff)) {
    return std::nullopt;
  }
  const Elf64_Shdr& strs = out.headers[eh->e_shstrndx];
  if (strs.sh_type != SHT_STRTAB) {
    return std::nullopt;
  }
  auto names = out.contents(fd, strs, k_max_shstrtab);
  if (!names) {
    return std::nullopt;
  }
  out.names.assign(reinterpret_cast<const char*>(names->data()),
                   reinterpret_cast<const char*>(names->data()) + names->size());
  out.names.push_back('\0');
  return out;
}

constexpr uint64_t k_max_note_section = 64 << 10;
constexpr unsigned k_max_note_sections = 16;

} // namespace

std::optional<DebugAltLink> read_debug_altlink(int fd) {
  const auto secs = read_sections(fd);
  if (!secs) {
    return std::nullopt;
  }
  for (const Elf64_Shdr& sh : secs->headers) {
    if (secs->name(sh) != ".gnu_debugaltlink") {
      continue;
    }
    const auto link = secs->contents(fd, sh, k_max_altlink);
    if (!link) {
      return std::nullopt;
    }
    const auto nul = std::ranges::find(*link, std::byte{0});
    if (nul == link->end()) {
      return std::nullopt;
    }
    const auto at = static_cast<size_t>(nul - link->begin());
    const auto id = std::span(*link).subspan(at + 1);
    if (id.empty() || id.size() > 64) {
      return std::nullopt;
    }
    return DebugAltLink{std::string(reinterpret_cast<const char*>(link->data()), at),
                        hex_bytes(id)};
  }
  return std::nullopt;
}

std::optional<std::string> read_section_build_id(int fd) {
  const auto secs = read_sections(fd);
  if (!secs) {
    return std::nullopt;
  }
  unsigned seen = 0;
  for (const Elf64_Shdr& sh : secs->headers) {
    if (sh.sh_type != SHT_NOTE || ++seen > k_max_note_sections) {
      continue;
    }
    if (const auto notes = secs->contents(fd, sh, k_max_note_section)) {
      if (auto id = gnu_build_id_in_notes(*notes)) {
        return id;
      }
    }
  }
  return std::nullopt;
}

} // namespace common
