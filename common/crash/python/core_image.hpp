// A core's memory for the Python stack walker, kept from one pass over the core's stream (a
// stored .core.zst decompressed chunk by chunk, or a plain core read in order): the dumped bytes
// of the segments the interpreter's structures live in, within a fixed bound, and a reader over
// them that takes the pages the kernel did not dump from the file mapped there.
#pragma once

#include "common/crash/capture.hpp"
#include "common/crash/python/memory.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace crash::python {

// Dumped bytes kept of one core at most: the heap, the interpreter's data, the threads' stacks
// of a Python process fit in it many times over; what is past it reads as unknown.
inline constexpr uint64_t k_max_image_bytes = 256ULL << 20;

// One PT_LOAD of the core.
struct CoreSegment {
  uint64_t vaddr = 0;
  uint64_t memsz = 0;
  uint64_t offset = 0;          // in the core
  uint64_t filesz = 0;          // dumped bytes (≤ memsz)
  uint32_t flags = 0;           // PF_R/PF_W/PF_X
  bool kept = false;            // its dumped bytes are collected (not executable, within the bound)
  std::vector<std::byte> bytes; // the first bytes.size() of the dumped ones, as they arrived
};

// Observes a core in stream order and keeps the dumped bytes of its non-executable segments (the
// interpreter's data, heap, arenas, stacks and the first page of each mapped ELF file) in stream
// order until k_max_image_bytes. Executable segments (code, JIT) are left out: the walker reads
// no code. Hostile input gives fewer segments and an `error`, never an unbounded allocation.
class CoreImageCollector final : public common::StreamObserver {
public:
  explicit CoreImageCollector(uint64_t max_bytes = k_max_image_bytes);
  void observe(std::span<const std::byte> chunk) override;
  // False once every kept segment's bytes have passed (or the input is not a core).
  bool wants_more() const override;

  const std::vector<CoreSegment>& segments() const { return m_segments; }
  std::vector<CoreSegment> take_segments() { return std::move(m_segments); }
  const std::string& error() const { return m_error; }
  uint64_t left_out() const { return m_left_out; } // dumped bytes past the bound, not kept

private:
  void parse_headers();
  void copy(uint64_t pos, std::span<const std::byte> chunk);

  uint64_t m_max;
  uint64_t m_pos = 0;            // stream offset of the next byte
  std::vector<std::byte> m_head; // the ELF and program headers until they are read
  bool m_headers_done = false;
  bool m_dead = false;
  uint64_t m_end = 0; // stream offset past the last kept byte
  uint64_t m_left_out = 0;
  std::string m_error;
  std::vector<CoreSegment> m_segments; // ascending offset
  size_t m_next = 0;                   // first segment not wholly passed
};

// A file mapped in the crashed process, opened by the caller: where the kernel dumped nothing
// of it, its pages are read from here.
struct ImageFile {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t offset = 0; // file offset of `start`
  int fd = -1;         // not owned
};

// The collected core as memory: a segment's kept bytes from the core; the part of a segment the
// kernel did not dump (p_filesz < p_memsz: read-only file pages under the default
// coredump_filter, `Py_Version` in .rodata) from a file of `files` mapped there; the dumped
// bytes that were not kept (a cut core, the bound) fail to read — a file's bytes may differ from
// what the process had written there. A file mapping no segment covers (gdb's gcore leaves such
// segments out) is read from the file.
class CoreImageReader final : public MemoryReader {
public:
  CoreImageReader(std::vector<CoreSegment> segments, std::vector<ImageFile> files);

private:
  bool fetch(const Mapping& mapping, uint64_t address, std::span<std::byte> out) override;
  bool from_files(uint64_t address, std::span<std::byte> out) const;
  std::vector<CoreSegment> m_segments;
  std::vector<ImageFile> m_files;
};

} // namespace crash::python
