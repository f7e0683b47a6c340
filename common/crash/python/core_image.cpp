// The segments of a core the Python walker reads, kept from one pass over its stream.
#include "common/crash/python/core_image.hpp"

#include "common/base/io.hpp"

#include <elf.h>

#include <algorithm>
#include <cstring>

namespace crash::python {

namespace {

// Program headers read at most: PN_XNUM cores (65535 mappings and more) keep their real count in
// a section header at the end of the file, past every segment; a Python process has far fewer.
constexpr uint64_t k_max_phnum = PN_XNUM - 1;

template <typename T>
T load(std::span<const std::byte> bytes, size_t at) {
  T v{};
  std::memcpy(&v, bytes.data() + at, sizeof v);
  return v;
}

} // namespace

CoreImageCollector::CoreImageCollector(uint64_t max_bytes) : m_max(max_bytes) {}

bool CoreImageCollector::wants_more() const {
  return !m_dead && (!m_headers_done || m_pos < m_end);
}

void CoreImageCollector::observe(std::span<const std::byte> chunk) {
  if (m_dead || chunk.empty()) {
    return;
  }
  if (!m_headers_done) {
    // Buffered until the program headers are complete: at most 64 + 65534 × 56 bytes.
    m_head.insert(m_head.end(), chunk.begin(), chunk.end());
    m_pos += chunk.size();
    parse_headers();
    if (m_headers_done) {
      std::vector<std::byte> head = std::move(m_head);
      m_head.clear();
      copy(0, head);
    }
    return;
  }
  copy(m_pos, chunk);
  m_pos += chunk.size();
}

void CoreImageCollector::parse_headers() {
  if (m_head.size() < sizeof(Elf64_Ehdr)) {
    return;
  }
  const auto eh = load<Elf64_Ehdr>(m_head, 0);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_type != ET_CORE ||
      eh.e_phentsize != sizeof(Elf64_Phdr)) {
    m_error = "not an ELF64 little-endian core";
    m_dead = true;
    return;
  }
  if (eh.e_phnum >= k_max_phnum + 1) {
    m_error = "more program headers than the walker reads (PN_XNUM)";
    m_dead = true;
    return;
  }
  const uint64_t table = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff > (16ULL << 20) || eh.e_phoff < sizeof(Elf64_Ehdr)) {
    m_error = "the program headers are not after the ELF header";
    m_dead = true;
    return;
  }
  if (m_head.size() < eh.e_phoff + table) {
    return;
  }
  uint64_t budget = m_max;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    const auto ph = load<Elf64_Phdr>(m_head, eh.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0 || ph.p_vaddr + ph.p_memsz < ph.p_vaddr ||
        ph.p_offset + ph.p_filesz < ph.p_offset) {
      continue;
    }
    CoreSegment s;
    s.vaddr = ph.p_vaddr;
    s.memsz = ph.p_memsz;
    s.offset = ph.p_offset;
    s.filesz = std::min(ph.p_filesz, ph.p_memsz);
    s.flags = ph.p_flags;
    m_segments.push_back(std::move(s));
  }
  // The kernel writes segments in address order at ascending offsets; a hostile table may not.
  std::ranges::sort(m_segments, {}, &CoreSegment::offset);
  for (CoreSegment& s : m_segments) {
    if ((s.flags & PF_X) != 0 || s.filesz == 0) {
      continue;
    }
    if (s.filesz > budget) {
      m_left_out += s.filesz;
      continue;
    }
    budget -= s.filesz;
    s.kept = true;
    m_end = std::max(m_end, s.offset + s.filesz);
  }
  m_headers_done = true;
}

void CoreImageCollector::copy(uint64_t pos, std::span<const std::byte> chunk) {
  const uint64_t chunk_end = pos + chunk.size();
  while (m_next < m_segments.size() &&
         m_segments[m_next].offset + m_segments[m_next].filesz <= pos) {
    ++m_next;
  }
  for (size_t i = m_next; i < m_segments.size() && m_segments[i].offset < chunk_end; ++i) {
    CoreSegment& s = m_segments[i];
    if (!s.kept) {
      continue;
    }
    // Bytes arrive in order: append what this chunk holds right after those already kept.
    const uint64_t want_from = s.offset + s.bytes.size();
    const uint64_t seg_end = s.offset + s.filesz;
    if (want_from >= seg_end || want_from < pos || want_from >= chunk_end) {
      continue;
    }
    const uint64_t upto = std::min(seg_end, chunk_end);
    const auto from = chunk.subspan(want_from - pos, upto - want_from);
    if (s.bytes.capacity() == 0) {
      s.bytes.reserve(s.filesz); // within the bound: counted when the segment was kept
    }
    s.bytes.insert(s.bytes.end(), from.begin(), from.end());
  }
}

CoreImageReader::CoreImageReader(std::vector<CoreSegment> segments, std::vector<ImageFile> files)
    : MemoryReader([&] {
        // Mapping::offset is the segment's index + 1 (0: a file mapping without a segment).
        std::vector<Mapping> m;
        for (size_t i = 0; i < segments.size(); ++i) {
          m.push_back(Mapping{segments[i].vaddr, segments[i].vaddr + segments[i].memsz, -1, i + 1,
                              segments[i].vaddr + segments[i].bytes.size()});
        }
        const size_t n = m.size();
        for (const ImageFile& f : files) {
          bool overlaps = f.end <= f.start;
          for (size_t i = 0; i < n && !overlaps; ++i) {
            overlaps = f.start < m[i].end && m[i].start < f.end;
          }
          if (!overlaps) {
            m.push_back(Mapping{f.start, f.end, -1, 0, f.start});
          }
        }
        // Segments overlapping each other (hostile) would make lookups ambiguous: the first of
        // each overlapping run is kept.
        std::ranges::sort(m, {}, &Mapping::start);
        std::vector<Mapping> out;
        for (const Mapping& x : m) {
          if (out.empty() || x.start >= out.back().end) {
            out.push_back(x);
          }
        }
        return out;
      }()),
      m_segments(std::move(segments)), m_files(std::move(files)) {}

bool CoreImageReader::from_files(uint64_t address, std::span<std::byte> out) const {
  while (!out.empty()) {
    const ImageFile* f = nullptr;
    for (const ImageFile& m : m_files) {
      if (address >= m.start && address < m.end && m.fd >= 0) {
        f = &m;
        break;
      }
    }
    if (f == nullptr) {
      return false;
    }
    const uint64_t n = std::min<uint64_t>(out.size(), f->end - address);
    if (!common::read_exact_at(f->fd, out.first(n), f->offset + (address - f->start))) {
      return false;
    }
    address += n;
    out = out.subspan(n);
  }
  return true;
}

bool CoreImageReader::fetch(const Mapping& mapping, uint64_t address, std::span<std::byte> out) {
  if (mapping.offset == 0) {
    return from_files(address, out);
  }
  const CoreSegment& s = m_segments[mapping.offset - 1];
  const uint64_t at = address - s.vaddr;
  // Dumped and kept: from the core.
  if (at < s.bytes.size()) {
    const uint64_t n = std::min<uint64_t>(out.size(), s.bytes.size() - at);
    std::memcpy(out.data(), s.bytes.data() + at, n);
    out = out.subspan(n);
    address += n;
  }
  if (out.empty()) {
    return true;
  }
  // Dumped but not kept (cut, executable, past the bound): unknown, not the file's bytes.
  if (address - s.vaddr < s.filesz) {
    return false;
  }
  // Not dumped: the file mapped there holds the page unchanged (the kernel dumps written ones).
  return from_files(address, out);
}

} // namespace crash::python
