// Module files on disk: the symbol at a crash offset, and whether mapped files changed since the
// crashed process loaded them.
//
// Paths come from the core's NT_FILE note: they are attacker-controlled and name files in the
// *crasher's* mount namespace. Call these after dropping privileges, and pass a directory fd of
// the crasher's root (opened from /proc/<pid>/root while it existed) for containerized processes;
// without one, paths are looked up in our own namespace and may name unrelated files. Files are
// opened O_NONBLOCK|O_NOFOLLOW and must be regular; reads are bounded pread()s, never mmap (a
// module truncated while we read must not SIGBUS the handler — that is one of the crashes we
// exist to explain).
#pragma once

#include "common/base/fd.hpp"
#include "common/crash/elf_notes.hpp"

#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace common {

struct ResolvedSymbol {
  std::string name;      // demangled when it is a C++ name; raw bytes otherwise
  uint64_t offset = 0;   // address − symbol start
  bool verified = false; // the file's build-id equals the one from the core
};

// A module file named by the core, open for pread: see above for how (O_PATH and O_NOFOLLOW
// first, then only a regular file on a local file system). The one way this code opens them.
struct ModuleFile {
  UniqueFd fd; // O_RDONLY | O_NONBLOCK; empty when the file could not be opened or was refused
  struct stat st {}; // of the file, when it was found
  int error = 0;     // errno of a failed open (ENOENT: no such file); 0 when refused for its kind
};
ModuleFile open_module_file(const std::string& path, int root_fd = -1);

// The second half of open_module_file(): `opath` (an O_PATH descriptor of a file found some other
// way, e.g. through /proc/<pid>/map_files) opened for reading if it is a regular local file.
ModuleFile reopen_module_file(UniqueFd opath);

// The symbol containing `file_offset` (a CoreFacts::module_offset) of the ELF file `path`:
// converts the file offset to a virtual address through the file's PT_LOADs, then searches
// .symtab, else .dynsym. With a non-empty `expected_build_id` the file must carry exactly that
// build-id (else nullopt: the file on disk is not what crashed); with an empty one the result is
// unverified. `root_fd` >= 0 resolves `path` inside that root (openat2 RESOLVE_IN_ROOT).
std::optional<ResolvedSymbol> resolve_symbol(const std::string& path, uint64_t file_offset,
                                             std::string_view expected_build_id, int root_fd = -1);

// resolve_symbol() over a module file the caller opened (`fd` stays the caller's): for the
// analysis child, which opens nothing by path.
std::optional<ResolvedSymbol> resolve_symbol_fd(int fd, uint64_t file_offset,
                                                std::string_view expected_build_id);

// The GNU build-id (hex) of the ELF file at `path`; nullopt when unreadable or absent.
std::optional<std::string> read_build_id(const std::string& path, int root_fd = -1);

enum class FindingKind {
  deleted,              // NT_FILE marks the path " (deleted)": unlinked after it was mapped
  missing,              // no file at the path any more
  replaced,             // the file's build-id differs from the mapped image's
  modified_after_start, // mtime is later than the process start
};
std::string_view to_string(FindingKind kind);

struct MappingFinding {
  std::string path; // as in NT_FILE (raw bytes)
  FindingKind kind = FindingKind::deleted;
  std::string detail; // human-readable specifics (raw path bytes possible)
};

// Checks each distinct file of `files` (at most 4096) on disk: deleted, missing, replaced
// (against `build_ids` from the core), modified after `process_start` (when known). The cost is
// bounded whatever the core names: each file reads at most 4 note segments and 64 KiB of notes,
// a file reached through several paths (hard links) is read once, and all files together read
// at most 16 MiB; files past that bound are not checked.
std::vector<MappingFinding> check_mapped_files(
    std::span<const FileMapping> files, const std::map<std::string, std::string>& build_ids,
    std::optional<std::chrono::system_clock::time_point> process_start, int root_fd = -1);

} // namespace common
