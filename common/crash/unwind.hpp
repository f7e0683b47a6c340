// Backtraces of every thread of a core, after the stream: elfutils' CFI unwinder (libdwfl) over
// the registers and stack windows the scanner kept, with frame pointers and then a validated
// stack scan as fallbacks; symbols and source lines from the module files on disk.
//
// Modules are the images the loader mapped (ModuleGroup, module_at() in elf_core.hpp), never a
// stray mapping of the same file. Only module files that are the image the core saw are used (a
// file replaced since the crash would give fiction): by GNU build-id, else Go build id, else the
// bytes of the first page (ModuleMatch). Module paths are the crasher's (attacker-controlled): they
// are opened like symbolize.hpp says (O_PATH first, regular local files only, inside the crasher's
// root when `root_fd` is given) and read with pread, never mmap. Debug files are looked up by
// build-id only, under the host's debug directories.
#pragma once

#include "common/base/fd.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/symbolize.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace common {

// How a frame was found, most trusted first (the names rust-minidump uses).
enum class FrameTrust {
  context,       // the registers of the thread (frame #0)
  cfi,           // call-frame information (.eh_frame / .debug_frame) of a verified module
  frame_pointer, // the saved frame-pointer chain
  scan,          // a stack word that points just after a call instruction
};
std::string_view to_string(FrameTrust trust);
std::optional<FrameTrust> frame_trust_from_string(std::string_view s);

// A source position from DWARF line tables.
struct SourceLine {
  std::string file; // as in the line table (raw bytes)
  int line = 0;
};

// One frame. `pc` is the frame's address as unwound: the pc for frame #0 and for a frame a
// signal interrupted, a return address for the others (symbols and lines are looked up at
// pc − 1 for those). A pc inside inlined code gives one frame per inlined function, innermost
// first, like gdb; names come from DWARF when the module has it, else from the symbol tables.
struct Frame {
  uint64_t pc = 0;
  FrameTrust trust = FrameTrust::context;
  std::string module;                    // NT_FILE path (raw bytes); empty when anonymous
  std::optional<uint64_t> module_offset; // file offset of pc in `module`
  std::string build_id;                  // of `module`, from the core; empty when unknown
  std::optional<ResolvedSymbol> symbol;  // from a module file whose build-id matched
  std::optional<SourceLine> source;
  bool inlined = false;      // a function inlined at pc into the next frame (same pc)
  bool exact_pc = false;     // pc is the instruction itself, not a return address (frame #0,
                             // frames around a signal): looked up at pc, not pc − 1
  bool signal_frame = false; // the kernel's signal trampoline (__restore_rt): the next frame is
                             // where the signal interrupted the thread
  // pc lies in anonymous executable memory (CoreFacts::anonymous_code): code a JIT compiler
  // wrote; `symbol` is then the name the process's perf map gives it, when it has one.
  bool jit = false;
};

// One thread's backtrace.
struct ThreadTrace {
  int64_t tid = 0;
  bool crashing = false; // the thread that took the signal (the core's first NT_PRSTATUS)
  std::string name;      // /proc/<pid>/task/<tid>/comm when read in time; empty otherwise
  std::string state;     // one letter of /proc/<pid>/task/<tid>/stat; empty when unknown
  std::vector<Frame> frames;
  std::string error; // why the trace ended early; empty when it reached the outermost frame
};

// The files an analysis reads, opened before it starts, so that it can run where nothing can be
// opened (common/sandbox/analysis_sandbox): each module file named by the core, by NT_FILE path,
// each separate debug file found for a module's build-id, by build-id (raw, not yet prepared),
// and the DWZ alternate files those name.
struct AnalysisFiles {
  std::map<std::string, UniqueFd> modules;
  std::map<std::string, UniqueFd> debug;
  // The DWZ alternate file a debug file names (.gnu_debugaltlink), by the module's build-id:
  // found by its own build-id under the debug directories, or at the absolute path the link
  // names when that is under one of them and the file there has that build-id.
  std::map<std::string, UniqueFd> alt;
  // Every descriptor above, for the caller to keep open across a fork.
  std::vector<int> fds() const;
};

struct UnwindOptions {
  int root_fd = -1; // the crasher's root for module paths (see symbolize.hpp)
  // When set, the analysis reads these and opens no path at all (a module or debug file missing
  // here is missing); when null it opens module paths under root_fd and debug_dirs itself.
  const AnalysisFiles* files = nullptr;
  // The whole analysis stops here: threads not started get their context frame only.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  size_t max_threads = 64;
  size_t max_frames = 64;
  // Where separate debug files are looked up as <dir>/.build-id/xx/rest.debug.
  std::vector<std::string> debug_dirs = {"/usr/lib/debug"};
  // A module whose symbol and debug sections together are larger is unwound but not
  // symbolized: libelf reads whole sections into memory.
  uint64_t max_symbol_bytes = 64u << 20;
  // The crashed process's perf-<pid>.map as it was read (common/crash/perf_map): names for the
  // frames in anonymous executable memory. Empty when there was none.
  std::string_view perf_map;
};

// Opens what unwind_threads() and analyze_crash() would open for `facts` under `options`
// (root_fd, debug_dirs; `options.files` is ignored): the module files of the first
// k_max_modules loaded modules the core identifies (ModuleGroup::match), one per path, and the
// debug files of those with a build-id.
// `open_module`, when given, opens each module from its first mapping, the caller's own way (e.g.
// the crashed process's map_files), and no module path is opened; when it gives nothing, the
// first mappings of up to 4 other groups of the same path are tried (the file is checked against
// the module's identity before use). Without it modules are opened by path (open_module_file
// under root_fd).
using ModuleOpener = std::function<UniqueFd(const FileMapping& first)>;
AnalysisFiles open_analysis_files(const CoreFacts& facts, const UnwindOptions& options,
                                  const ModuleOpener& open_module = {});

// Unwinds every thread the scanner kept (facts.thread_states), the crashing thread first.
std::vector<ThreadTrace> unwind_threads(const CoreFacts& facts, const UnwindOptions& options);

} // namespace common
