// Bounded reads of a crashed process's memory, live or from its core.
#include "common/crash/python/memory.hpp"

#include "common/base/io.hpp"
#include "common/base/parse.hpp"

#include <elf.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace crash::python {

namespace {

// Fills `out` from `offset`; false on an error or end of file (a truncated core).
bool read_all_at(int fd, std::span<std::byte> out, uint64_t offset) {
  return common::read_exact_at(fd, out, offset).has_value();
}

void sort_mappings(std::vector<Mapping>& mappings) {
  std::sort(mappings.begin(), mappings.end(),
            [](const Mapping& a, const Mapping& b) { return a.start < b.start; });
}

} // namespace

MemoryReader::MemoryReader(std::vector<Mapping> mappings) : m_mappings(std::move(mappings)) {
  sort_mappings(m_mappings);
  start(Budget{});
}

void MemoryReader::start(const Budget& budget) {
  m_budget = budget;
  m_deadline = std::chrono::steady_clock::now() + budget.max_time;
  m_reads = 0;
  m_bytes = 0;
  m_calls = 0;
  m_pages.clear();
  m_failure = ReadFailure::none;
}

bool MemoryReader::exhausted() const {
  return m_failure == ReadFailure::reads || m_failure == ReadFailure::bytes ||
         m_failure == ReadFailure::time;
}

const Mapping* MemoryReader::find(uint64_t address, uint64_t size) const {
  if (size == 0 || address + size < address) {
    return nullptr;
  }
  auto it = std::upper_bound(m_mappings.begin(), m_mappings.end(), address,
                             [](uint64_t a, const Mapping& m) { return a < m.start; });
  if (it == m_mappings.begin()) {
    return nullptr;
  }
  --it;
  return (address >= it->start && address + size <= it->end) ? &*it : nullptr;
}

bool MemoryReader::mapped(uint64_t address, uint64_t size) const {
  return find(address, size) != nullptr;
}

bool MemoryReader::fetch_counted(const Mapping& mapping, uint64_t address,
                                 std::span<std::byte> out) {
  // Budgets first: a hostile process may steer the walk into endless cheap reads.
  if (m_reads >= m_budget.max_reads) {
    m_failure = ReadFailure::reads;
    return false;
  }
  if (m_bytes + out.size() > m_budget.max_bytes) {
    m_failure = ReadFailure::bytes;
    return false;
  }
  ++m_reads;
  m_bytes += out.size();
  if (!fetch(mapping, address, out)) {
    if (m_failure == ReadFailure::none) {
      m_failure = ReadFailure::io;
    }
    return false;
  }
  return true;
}

bool MemoryReader::read(uint64_t address, std::span<std::byte> out) {
  if (exhausted()) {
    return false;
  }
  // The clock is read every 64 calls: cheap enough, and each read is bounded by the kernel.
  if ((m_calls++ & 63) == 0 && std::chrono::steady_clock::now() > m_deadline) {
    m_failure = ReadFailure::time;
    return false;
  }
  const Mapping* mapping = find(address, out.size());
  if (mapping == nullptr) {
    if (m_failure == ReadFailure::none) {
      m_failure = ReadFailure::unmapped;
    }
    return false;
  }
  const uint64_t page = address & ~(k_page - 1);
  if (page != ((address + out.size() - 1) & ~(k_page - 1)) || page < mapping->start ||
      page + k_page > mapping->end) {
    return fetch_counted(*mapping, address, out);
  }
  auto it = m_pages.find(page);
  if (it == m_pages.end()) {
    if (m_pages.size() >= k_max_cached_pages) {
      m_pages.clear(); // bounded memory; a walk rarely touches this many pages
    }
    std::vector<std::byte> bytes(k_page);
    if (!fetch_counted(*mapping, page, bytes)) {
      return false;
    }
    it = m_pages.emplace(page, std::move(bytes)).first;
  }
  std::memcpy(out.data(), it->second.data() + (address - page), out.size());
  return true;
}

std::optional<uint64_t> MemoryReader::read_u64(uint64_t address) {
  std::array<std::byte, 8> b{};
  if (!read(address, b)) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    v |= static_cast<uint64_t>(b[i]) << (8 * i);
  }
  return v;
}

std::optional<uint32_t> MemoryReader::read_u32(uint64_t address) {
  std::array<std::byte, 4> b{};
  if (!read(address, b)) {
    return std::nullopt;
  }
  uint32_t v = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    v |= static_cast<uint32_t>(b[i]) << (8 * i);
  }
  return v;
}

ProcMemReader::ProcMemReader(int mem_fd, std::vector<Mapping> mappings)
    : MemoryReader(std::move(mappings)), m_fd(mem_fd) {}

bool ProcMemReader::fetch(const Mapping&, uint64_t address, std::span<std::byte> out) {
  return read_all_at(m_fd, out, address);
}

std::vector<Mapping> parse_proc_maps(std::string_view maps) {
  std::vector<Mapping> out;
  constexpr size_t k_max_mappings = 65536; // the kernel's default vm.max_map_count
  while (!maps.empty() && out.size() < k_max_mappings) {
    const size_t nl = maps.find('\n');
    std::string_view line = maps.substr(0, nl);
    maps = nl == std::string_view::npos ? std::string_view{} : maps.substr(nl + 1);
    const size_t dash = line.find('-');
    const size_t space = line.find(' ');
    if (dash == std::string_view::npos || space == std::string_view::npos || dash > space) {
      continue;
    }
    const auto start = common::parse_number<uint64_t>(line.substr(0, dash), 16);
    const auto end = common::parse_number<uint64_t>(line.substr(dash + 1, space - dash - 1), 16);
    if (!start || !end || *end <= *start) {
      continue;
    }
    // Unreadable ranges (guard pages, PROT_NONE reservations) are not mappings for us.
    if (line.size() > space + 1 && line[space + 1] != 'r') {
      continue;
    }
    out.push_back(Mapping{*start, *end, -1, 0, *end});
  }
  return out;
}

common::Expected<CoreFileReader> CoreFileReader::open(int core_fd,
                                                      std::span<const FileMapping> files) {
  Elf64_Ehdr eh{};
  if (!read_all_at(core_fd, std::as_writable_bytes(std::span(&eh, 1)), 0) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_type != ET_CORE || eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return common::fail("Not an ELF64 core file");
  }
  constexpr uint16_t k_max_segments = 65535;
  std::vector<Mapping> mappings;
  for (uint16_t i = 0; i < eh.e_phnum && i < k_max_segments; ++i) {
    Elf64_Phdr ph{};
    if (!read_all_at(core_fd, std::as_writable_bytes(std::span(&ph, 1)),
                     eh.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr))) {
      return common::fail("The core's program headers are truncated");
    }
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0 || ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
      continue;
    }
    const uint64_t filesz = std::min(ph.p_filesz, ph.p_memsz);
    mappings.push_back(
        Mapping{ph.p_vaddr, ph.p_vaddr + ph.p_memsz, core_fd, ph.p_offset, ph.p_vaddr + filesz});
  }
  // The kernel writes a PT_LOAD with p_filesz 0 for a mapping it does not dump; gdb's gcore
  // leaves the segment out. A file mapping no segment overlaps is read from the file alone.
  const size_t segments = mappings.size();
  for (const FileMapping& f : files) {
    bool overlaps = f.end <= f.start;
    for (size_t i = 0; i < segments && !overlaps; ++i) {
      overlaps = f.start < mappings[i].end && mappings[i].start < f.end;
    }
    if (!overlaps) {
      mappings.push_back(Mapping{f.start, f.end, -1, 0, f.start});
    }
  }
  return CoreFileReader(std::move(mappings), std::vector<FileMapping>(files.begin(), files.end()));
}

CoreFileReader::CoreFileReader(std::vector<Mapping> mappings, std::vector<FileMapping> files)
    : MemoryReader(std::move(mappings)), m_files(std::move(files)) {}

bool CoreFileReader::fetch(const Mapping& mapping, uint64_t address, std::span<std::byte> out) {
  // The part of the range the core holds comes from the core.
  if (address < mapping.file_end) {
    const uint64_t n = std::min<uint64_t>(out.size(), mapping.file_end - address);
    if (!read_all_at(mapping.fd, out.first(n), mapping.offset + (address - mapping.start))) {
      return false;
    }
    address += n;
    out = out.subspan(n);
  }
  // The rest was not dumped: a file mapped there holds it, unchanged (the kernel dumps
  // written private pages), else the bytes are unknown and the read fails.
  while (!out.empty()) {
    const FileMapping* f = nullptr;
    for (const FileMapping& m : m_files) {
      if (address >= m.start && address < m.end) {
        f = &m;
        break;
      }
    }
    if (f == nullptr || f->fd < 0) {
      return false;
    }
    const uint64_t n = std::min<uint64_t>(out.size(), f->end - address);
    if (!read_all_at(f->fd, out.first(n), f->offset + (address - f->start))) {
      return false;
    }
    address += n;
    out = out.subspan(n);
  }
  return true;
}

ImageReader::ImageReader(uint64_t base, std::span<const std::byte> bytes)
    : MemoryReader({Mapping{base, base + bytes.size(), -1, 0, base + bytes.size()}}), m_base(base),
      m_bytes(bytes) {}

bool ImageReader::fetch(const Mapping&, uint64_t address, std::span<std::byte> out) {
  std::memcpy(out.data(), m_bytes.data() + (address - m_base), out.size());
  return true;
}

} // namespace crash::python
