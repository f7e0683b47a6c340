// A per-user cache of record summaries, so `list` and `groups` over 100,000 records need not
// parse 100,000 JSON files every time.
//
// Validity: one entry per <host>/<exe> directory, keyed by the directory's inode and mtime (ns).
// Records and cores are only ever created, atomically replaced (rename) or unlinked, and each of
// those changes the directory's mtime. A directory modified within the last two seconds is never
// cached: with coarse timestamps a change in the same tick as our read would keep the mtime (the
// "racy git" problem). Access is still checked on every run: each directory is opened before its
// cached summaries are used, so losing read access to the store also hides the cache.
#pragma once

#include "cli/catalog/crash.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cli {

struct DirStamp {
  uint64_t ino = 0;
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;
  bool operator==(const DirStamp&) const = default;
};

struct CachedDir {
  DirStamp stamp;
  uint64_t entries = 0;       // names in the directory when it was read (the index keeps it)
  std::vector<Crash> crashes; // every record of the directory, unfiltered
  std::vector<std::string> ids;
  size_t malformed = 0;
};

// Keyed by (host component, executable component).
using SummaryCache = std::map<std::pair<std::string, std::string>, CachedDir>;

// $XDG_CACHE_HOME (or ~/.cache)/process-core/corectl-<hash of the store path>; "" with
// CORECTL_CACHE=0, or when $XDG_CACHE_HOME (else $HOME) is not a directory owned by the effective
// user (root under `sudo -E`), or a link lies anywhere on the way. Every use of the path opens it
// again one component at a time, without following links.
std::string cache_path_for(const std::string& store_root);

// Reads a cache file; anything missing, foreign, linked or malformed is an empty cache.
SummaryCache read_cache(const std::string& path, const std::string& store_root);
// The same from the file's text (for tests and the fuzz target).
SummaryCache parse_cache(std::string_view text, const std::string& store_root);

// Replaces the cache file atomically; failures are ignored (the cache is only an optimisation).
void write_cache(const std::string& path, const std::string& store_root, const SummaryCache& c);

} // namespace cli
