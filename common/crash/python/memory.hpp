// The crashed process's memory as the Python stack walker sees it: an abstract reader over
// known mappings, with fixed budgets for reads, bytes and time, and two sources — a live
// process's /proc/<pid>/mem descriptor, or a core file's PT_LOAD segments with the mapped
// files behind them for the pages the kernel did not dump.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace crash::python {

// One range of the address space and where its bytes can be read from.
struct Mapping {
  uint64_t start = 0;
  uint64_t end = 0;      // exclusive
  int fd = -1;           // file holding the bytes (not owned), -1 when none
  uint64_t offset = 0;   // file offset of `start` in `fd`
  uint64_t file_end = 0; // bytes from `start` up to here are in `fd`; the rest reads as zero
};

// Fixed bounds on one walk. A walk that reaches one stops and records which.
struct Budget {
  uint64_t max_reads = 20000;
  uint64_t max_bytes = 8u << 20;
  std::chrono::milliseconds max_time{200};
};

// Why a read failed: outside every mapping, or a budget ran out.
enum class ReadFailure { none, unmapped, io, reads, bytes, time };

// Reads of untrusted memory. Every read lies wholly inside one known mapping (else it fails as
// `unmapped`, without touching any descriptor) and is counted against the budget.
class MemoryReader {
public:
  virtual ~MemoryReader() = default;

  // Copies `out.size()` bytes at `address` into `out`; false (and `failure()` set) otherwise.
  bool read(uint64_t address, std::span<std::byte> out);

  // Reads a little-endian pointer-sized (8-byte) or 4-byte value.
  std::optional<uint64_t> read_u64(uint64_t address);
  std::optional<uint32_t> read_u32(uint64_t address);

  // True when `address .. address+size` lies in one known mapping.
  bool mapped(uint64_t address, uint64_t size) const;

  // The first failure that stopped a read, and the counts so far (reads and bytes fetched
  // from the source, whole pages where they are cached).
  ReadFailure failure() const { return m_failure; }
  bool exhausted() const;
  uint64_t reads() const { return m_reads; }
  uint64_t bytes() const { return m_bytes; }

  // Starts the clock and counts of a new walk under `budget`.
  void start(const Budget& budget);

protected:
  explicit MemoryReader(std::vector<Mapping> mappings);
  // Reads from the source; `mapping` is the one that holds the whole range.
  virtual bool fetch(const Mapping& mapping, uint64_t address, std::span<std::byte> out) = 0;
  const std::vector<Mapping>& mappings() const { return m_mappings; }

private:
  const Mapping* find(uint64_t address, uint64_t size) const;
  bool fetch_counted(const Mapping& mapping, uint64_t address, std::span<std::byte> out);

  // Pages already read: the walker's small reads cluster (frames sit together in the thread's
  // data stack, code objects are shared), so one pread of a page serves most of them.
  static constexpr uint64_t k_page = 4096;
  static constexpr size_t k_max_cached_pages = 512;
  std::unordered_map<uint64_t, std::vector<std::byte>> m_pages;
  uint64_t m_calls = 0;

  std::vector<Mapping> m_mappings; // sorted by start, not overlapping
  Budget m_budget;
  std::chrono::steady_clock::time_point m_deadline;
  uint64_t m_reads = 0;
  uint64_t m_bytes = 0;
  ReadFailure m_failure = ReadFailure::none;
};

// A live process through its /proc/<pid>/mem descriptor (opened by whoever may open it).
class ProcMemReader final : public MemoryReader {
public:
  // `mem_fd` is not owned; `mappings` are the process's (from its maps or NT_FILE + PT_LOAD).
  ProcMemReader(int mem_fd, std::vector<Mapping> mappings);

private:
  bool fetch(const Mapping& mapping, uint64_t address, std::span<std::byte> out) override;
  int m_fd;
};

// Mappings of a live process from its /proc/<pid>/maps text, without files behind them.
std::vector<Mapping> parse_proc_maps(std::string_view maps);

// An uncompressed ELF core file: the PT_LOAD segments' bytes from the core, and for the part
// of a segment the kernel left out (p_filesz < p_memsz, e.g. read-only file pages under the
// default coredump_filter) the file mapped there, when the caller supplies it.
class CoreFileReader final : public MemoryReader {
public:
  // A file mapped in the crashed process (from NT_FILE), opened by the caller.
  struct FileMapping {
    uint64_t start = 0;
    uint64_t end = 0;
    uint64_t offset = 0; // file offset of `start`
    int fd = -1;         // not owned
  };

  // Reads the core's program headers; fails when `core_fd` is not an ELF64 core.
  static common::Expected<CoreFileReader> open(int core_fd, std::span<const FileMapping> files);

private:
  CoreFileReader(std::vector<Mapping> mappings, std::vector<FileMapping> files);
  bool fetch(const Mapping& mapping, uint64_t address, std::span<std::byte> out) override;
  std::vector<FileMapping> m_files;
};

// A fixed image of memory (tests and the fuzzer): `bytes` seen at `base`.
class ImageReader final : public MemoryReader {
public:
  ImageReader(uint64_t base, std::span<const std::byte> bytes);

private:
  bool fetch(const Mapping& mapping, uint64_t address, std::span<std::byte> out) override;
  uint64_t m_base;
  std::span<const std::byte> m_bytes;
};

} // namespace crash::python
