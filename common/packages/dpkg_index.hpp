// An index of one root's dpkg database (path → package, version, architecture), kept between
// crashes so that a lookup reads one small file instead of every `info/*.list`. It is keyed by
// the database's state and the root's identity, written only by the handler (as the store user,
// into a directory of its own in the store), and validated in full whenever it is read: a
// damaged, foreign or stale index is never used, only rebuilt.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace common {

// The store's directory of indexes, beside the records' host directories (a hidden name: no
// store walk enters it).
inline constexpr const char* k_dpkg_index_dir = ".dpkg-index";
// At most this many indexes are kept (the host's and a few containers'); the least recently used
// go first.
inline constexpr size_t k_max_dpkg_indexes = 8;
// A database naming more paths than this is not indexed (12 MiB of index): it is read per crash.
inline constexpr size_t k_max_dpkg_index_entries = size_t{1} << 20;
// The longest package name, version or architecture an index holds.
inline constexpr size_t k_max_dpkg_index_field = 1024;

// A package as the index names it.
struct IndexedPackage {
  std::string name;
  std::string version; // empty when `status` does not have it installed
  std::string arch;
};

// The 64-bit hash the index keys paths by (and checksums itself with).
uint64_t index_hash(std::string_view data);

class DpkgIndex {
public:
  // Adds a package and returns its number for add_path().
  uint32_t add_package(IndexedPackage p);
  // Records that package `package` lists path key `key` (a usr_merge_key); the first package
  // to list a key owns it. False when the index is full (k_max_dpkg_index_entries).
  bool add_path(std::string_view key, uint32_t package);
  // Sorts what add_path() collected; find() works only after it.
  void finish();

  // The package listing `key`, or nullptr. Paths are compared by their 64-bit hash: a
  // collision could only name another package of the same database.
  const IndexedPackage* find(std::string_view key) const;
  size_t size() const { return m_hashes.size(); }

  // The file's bytes, holding `state` (what the index was built from) and a checksum.
  std::string serialize(std::string_view state) const;
  // An index read back from serialize()'s bytes, if they are intact and were built from `state`;
  // an error saying what is wrong otherwise.
  static Expected<DpkgIndex> parse(std::string_view bytes, std::string_view state);

private:
  std::vector<IndexedPackage> m_packages;
  std::vector<uint64_t> m_hashes;                       // sorted by finish(), unique
  std::vector<uint32_t> m_owners;                       // package of m_hashes[i]
  std::vector<std::pair<uint64_t, uint32_t>> m_pending; // add_path()'s (hash, package)
};

// Opens (creating, mode 0700) the index directory k_dpkg_index_dir in the store `store_fd`. It
// must be a directory of the calling user, not a link (ELOOP, ENOTDIR) nor anyone else's
// (EPERM): whoever can write it decides what the handler believes about packages.
Expected<UniqueFd> open_dpkg_index_dir(int store_fd);

// The index stored under `state` in `dir`, if there is one and it is valid (its time of use is
// refreshed); an error with errno ENOENT when there is none.
Expected<DpkgIndex> load_dpkg_index(int dir, std::string_view state);

// Stores `index` under `state` in `dir` (atomically: a reader sees the old file or the new one)
// and removes the least recently used indexes beyond k_max_dpkg_indexes.
Expected<void> save_dpkg_index(int dir, std::string_view state, const DpkgIndex& index);

} // namespace common
