// Who owns the files a crashed process had mapped: the Debian package (dpkg's database of the
// process's own root: the host's or a container's), a Python distribution (`*.dist-info/RECORD`
// under site-packages or dist-packages), a Ruby gem (`gems/<name>-<version>/`) or an npm package
// (`node_modules/<pkg>/package.json`). Every file is read inside the given root (openat2
// RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), within a time and byte budget.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace common {

enum class OwnerSource { dpkg, python, gem, npm };
std::string_view to_string(OwnerSource s);

// One file and the package that owns it.
struct Owner {
  std::string path; // as the process mapped it (NT_FILE), or a Python frame's file
  std::string package;
  std::string version;
  std::string arch; // dpkg's Architecture; empty for the others
  OwnerSource source = OwnerSource::dpkg;
};

// The bounds of one lookup. The defaults keep it well inside the handler's analysis_timeout.
struct OwnershipLimits {
  std::chrono::milliseconds budget{250};
  // With an index directory: the time a lookup that finds no index for the root's database may
  // take to read it whole and index it (once per root and state), so that a loaded machine
  // still gets its index.
  std::chrono::milliseconds index_budget{1000};
  size_t max_bytes = size_t{96} << 20;     // read from all database files together
  size_t max_list_bytes = size_t{8} << 20; // of one dpkg .list file or RECORD
  size_t max_lists = 20000;                // dpkg .list files and dist-info directories
  size_t max_paths = 1024;                 // paths looked up
};

// What a lookup found.
struct Ownership {
  std::vector<Owner> owners;        // in the order of the paths asked for
  std::vector<std::string> unowned; // paths asked for that no database names
  // dpkg's database state the answer was read from ("status <size> <mtime ns>, info <mtime ns>"),
  // empty when the root has no dpkg database.
  std::string dpkg_state;
  // How dpkg's answer came: "used" (the index kept for this database state), "built" (every
  // .list read, and the index kept for the next crash) or "not kept: <why>"; empty without an
  // index directory or a dpkg database.
  std::string dpkg_index;
  bool complete = true; // false when a budget ended the lookup (`note` says which)
  std::string note;
  uint64_t elapsed_ms = 0;
};

// Opens `path` (absolute or relative) inside `root` as if `root` were "/": symbolic links,
// magic links ("/proc/self/...") and ".." cannot leave it (openat2 RESOLVE_IN_ROOT |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS). An error with the errno of openat2.
Expected<UniqueFd> open_in_root(int root, const std::string& path, int flags);

// The key merged-/usr aliases share: "/usr/lib/x/libc.so.6" and "/lib/x/libc.so.6" (and bin,
// sbin, lib32, lib64, libx32) give the same key; other paths are their own key.
std::string usr_merge_key(std::string_view path);
// The same key as a view into `path` (always a suffix of it).
std::string_view usr_merge_view(std::string_view path);

// The owners of `paths` (duplicates looked up once) inside `root`, a directory descriptor of the
// crashed process's root. With `index_dir` (open_dpkg_index_dir(), else -1) dpkg's database is
// read from the index kept there for its state, or read in full and indexed there for the next
// lookup. Never fails: what cannot be read is left unowned, and the note says why when a
// database could not be read or a budget ran out.
Ownership find_owners(int root, const std::vector<std::string>& paths,
                      const OwnershipLimits& limits = {}, int index_dir = -1);

} // namespace common
