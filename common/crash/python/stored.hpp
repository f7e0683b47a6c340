// The Python stacks of a core read afterwards (corectl): one pass over the core's stream (a
// stored .core.zst or a plain core) keeps its notes and the segments the interpreter lives in,
// then the interpreter's file — checked by build-id against the core's image of it — supplies
// the symbols and the pages the kernel did not dump, and the walker reads what the capture-time
// walk would have read from the live process. Meant for the sandboxed child: it only reads the
// descriptors it is given.
#pragma once

#include "common/crash/python/stacks.hpp"
#include "common/crash/python/walker.hpp"

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace crash::python {

// "python3.11", "python3.12d", "libpython3.13.so.1.0", "python2.7": a CPython by its file name.
bool cpython_file_name(std::string_view base);

// A file the caller opened because the core may map it (a CPython by its path in the record's or
// the core's mappings, or the crashed executable).
struct CandidateFile {
  std::string path;
  int fd = -1; // not owned
};

// How the core's bytes are stored.
enum class CoreEncoding { zstd, plain };

// `status = failed` when the core could not be read, or no candidate is the image the core
// mapped (not found, or changed on disk: the detail says which); else the walk's result. The
// module is found by its NT_FILE entry, or without one by the build-id in a dumped ELF header.
// `deadline` bounds the pass over the core; the walk has its own budget in `limits`.
PythonStacks walk_stored_core(int core_fd, CoreEncoding encoding,
                              std::span<const CandidateFile> candidates, const WalkLimits& limits,
                              std::chrono::steady_clock::time_point deadline);

// Fits `stacks` into `max` bytes of JSON: the innermost frames of each thread are kept (the
// frames per thread halved until it fits), then threads other than `crashed_tid` go; `cut` says
// what was cut and an `ok` becomes `partial`.
void fit_stacks(PythonStacks& stacks, int64_t crashed_tid, size_t max);

} // namespace crash::python
