// Separate debug files (/usr/lib/debug/.build-id/xx/rest.debug) made cheap for libdw.
//
// Distributions compress the DWARF of their debug files (SHF_COMPRESSED, zlib): libc6-dbg's
// 3.8 MB of sections inflate to 10 MB. libdw inflates every DWARF section of a file with zlib
// the moment it opens it, whatever the caller asks for, which made inflating libc's DWARF most
// of the handler's analysis time on a small core. Here a debug file is rewritten once into an
// anonymous in-memory file (memfd) holding the same ELF with only the sections the unwinder
// reads (symbol tables, notes, the DWARF of names, lines and inlined functions), inflated with
// libdeflate (about 2.5 times zlib's speed); location lists and macros are left out.
//
// Only for the host's debug files, found by build-id under root's directories: the file is
// mapped while it is copied (as libdw itself maps it). Never call this on a path from a core.
#pragma once

#include "common/base/fd.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace common {

// What to hand libdwfl for the debug file open on `fd`: `fd` itself when none of the sections
// it reads is compressed; else a memfd with the rewritten image (read-only, positioned at 0).
// An empty fd when the file is no usable ELF64 or its image would exceed `max_bytes`. A file
// this code does not know how to rewrite (GNU .zdebug_ sections, zstd, a DWZ alternate file,
// extended section numbering) is returned as it is: libdw then reads it the slow way.
UniqueFd prepare_debug_file(UniqueFd fd, uint64_t max_bytes);

// What the debug file on `fd` says in .gnu_debugaltlink: the path of its DWZ alternate file (the
// DWARF it shares with other debug files) and that file's build-id (lower-case hex); nullopt
// when it names none. Bounded: the section header table, a section name table of at most 1 MiB
// and a link of at most 4 KiB are read, nothing else.
struct DebugAltLink {
  std::string path;
  std::string build_id;
};
std::optional<DebugAltLink> read_debug_altlink(int fd);

// The GNU build-id (hex) in the note sections of the ELF file on `fd` (a DWZ alternate file has
// no program headers to find it by); nullopt when absent. Bounded as read_debug_altlink.
std::optional<std::string> read_section_build_id(int fd);

} // namespace common
