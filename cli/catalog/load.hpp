// The parts of corectl's catalog load (catalog.hpp) that its files share: catalog.cpp (the
// load, its filters and the user's view), store_read.cpp (one <host>/<exe> directory of the
// store, the places of a user's view), index_read.cpp (the store's index as the summaries of
// unchanged directories) and lookup.cpp (records by id prefix). Not for use outside cli/catalog.
#pragma once

#include "cli/catalog/cache.hpp"
#include "cli/catalog/catalog.hpp"
#include "common/index/index.hpp"
#include "common/store/store.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace cli {

// Reads the records of <host>/<exe>; with Parse::no only their ids are collected (directories
// the filter rules out still count for the id abbreviation, which must hold store-wide).
enum class Parse { no, yes };

struct WorkerResult {
  std::vector<Crash> crashes;
  LoadProblems problems;
  std::vector<uint64_t> ids; // every id seen (for the abbreviation length), add_id()
  std::vector<std::pair<std::pair<std::string, std::string>, CachedDir>> fresh; // for the cache
  // Directories whose index rows still hold (same inode, mtime and entry count), and whether
  // their records are wanted or only their ids.
  std::vector<std::pair<common::index::DirKey, Parse>> unchanged;
};

// What earlier reads left of the directories: the index's rows, or else the per-user cache's
// entries (cache.hpp). Either may be empty.
struct Known {
  const std::map<common::index::DirKey, common::index::IndexedDir>* indexed = nullptr;
  const SummaryCache* cache = nullptr;
};

// The first problem's message, kept when none was kept before.
void first_problem(LoadProblems& p, const std::string& message);
// Counts a failure by its errno (denied, planted by the store's owner, unreadable) and keeps
// the first message.
void note(LoadProblems& p, int err, const std::string& what);

// Reads <host>/<exe> into `out`: from `known` where its state is unchanged, else its records.
void load_exe_dir(int store_fd, const std::string& host, const std::string& exe,
                  const Filter& filter, Parse parse, const Known& known, WorkerResult& out);

// True when the store root can be listed; a user who may only traverse it (o+x) reaches their
// own crashes through their view instead (common/store/user_view).
bool root_listable(const common::Store& store);
// The crashes of the calling user's view as places in the store (a view names places, never
// content). Links whose record is gone (retention removed it) are skipped.
std::vector<Located> view_places(const common::Store& store, LoadProblems& problems);

// Whether a filter value may be a shown (escaped) name: its directory is then not the pure
// function of the value, and every directory is read.
bool maybe_escaped(const std::vector<std::string>& values);

// The index (common/index) as the summaries of unchanged directories: CORECTL_INDEX=0 turns it
// off. The store's owner writes it (when no exporter holds the writers' lock); everyone else who
// may read it only reads, and what changed since its writer last looked is read from the files.
struct OpenIndex {
  std::optional<common::index::Index> index;
  bool owner = false; // the caller owns the store: it may write the index
  std::map<common::index::DirKey, common::index::IndexedDir> dirs; // states, no records
};

OpenIndex open_index(const common::Store& store);
// Writes the directories read from the files into the index, and drops those gone from the
// store, when the caller owns the store and no other writer (the exporter) holds the lock.
void write_changes(
    const common::Store& store, OpenIndex& index,
    const std::vector<std::pair<common::index::DirKey, common::index::IndexedDir>>& fresh,
    const std::set<common::index::DirKey>& present);
// A directory as read from the files, as the index keeps it.
common::index::IndexedDir indexed_dir(const CachedDir& d);
// The crashes (and ids) of the directories whose index rows still hold, from the index: SQL
// narrows by the query, matches() decides. False when the index could not be read; what it
// added is then taken back.
bool read_unchanged(OpenIndex& index,
                    const std::vector<std::pair<common::index::DirKey, Parse>>& unchanged,
                    const Filter& filter, const std::vector<std::string>& host_dirs,
                    const std::vector<std::string>& exe_dirs, Catalog& cat,
                    std::vector<uint64_t>& ids);

} // namespace cli
