// A fleet's bucket as corectl sees it (corectl --remote s3://BUCKET/PREFIX): the catalog from
// the uploaders' index objects (PREFIX/.index/<node>/<YYYY-MM-DD>.jsonl, docs/fleet.md), records
// fetched only for the crashes a verb shows in full, cores downloaded and checked. Everything
// from the bucket is as untrusted as a store: bounded reads, checked names, keys computed here.
#pragma once

#include "cli/catalog/catalog.hpp"
#include "cli/exit.hpp"
#include "cli/remote/access.hpp"
#include "common/base/fd.hpp"
#include "common/packages/group_state.hpp"

#include <expected>
#include <map>
#include <memory>
#include <string>

namespace cli {

// Bounds on what one invocation reads from a bucket.
inline constexpr size_t k_max_index_objects = 100000;       // node-days
inline constexpr size_t k_max_index_bytes = 64ULL << 20;    // one index object
inline constexpr uint64_t k_max_index_total = 1ULL << 30;   // all index objects read at once
inline constexpr size_t k_max_summary_fetches = 20000;      // records GET'd for old index lines
inline constexpr unsigned k_remote_connections = 4;         // requests in flight at once
inline constexpr size_t k_max_group_nodes = 10000;          // nodes whose group files are read
inline constexpr uint64_t k_max_group_total = 256ULL << 20; // all group files read at once

class RemoteBucket {
public:
  // Connects nothing yet: the first request is the catalog's listing.
  explicit RemoteBucket(RemoteAccess access);
  ~RemoteBucket();
  RemoteBucket(RemoteBucket&&) noexcept;
  RemoteBucket& operator=(RemoteBucket&&) noexcept;

  // The crashes of every node's index objects the filter selects (days before --since and
  // after --until skipped by their names), oldest first; hostile lines and objects are reported
  // on stderr and skipped. A listing that fails is reported, with its exit status.
  std::expected<Catalog, Exit> load_catalog(const Filter& filter);

  // The crash groups' files every node uploaded (PREFIX/.groups/<node>/resolved.json and
  // seen.json), merged as common::merge_marks and merge_seen_groups do: the latest mark of a
  // group wins, its first crash is the earliest. A hostile or unreadable object is reported on
  // stderr and left out, as is the whole when the listing fails (states from the records alone).
  struct GroupFiles {
    common::Marks marks;
    common::Seen seen;
  };
  GroupFiles load_group_files();

  // Loads every crash's id and place, unless the last catalog loaded had them all already.
  std::expected<void, Exit> load_ids();

  // A full id or unique prefix among the bucket's crashes (load_ids() first, else it loads).
  std::expected<Located, LookupFailure> resolve_id(std::string_view prefix);

  // The record of a crash of the catalog, GET'd (bounded) and read as read_record() reads a
  // file: the id it names must be the id of its key.
  common::Expected<FullRecord> read_record(const Located& where) const;
  // The runtime's own report of a crash (uploaded beside its record), at most `max_bytes`;
  // ENOENT when the bucket has none.
  common::Expected<std::string> read_report(const Located& where, size_t max_bytes) const;

  // The stored (zstd) core of a crash, downloaded into an unlinked 0600 temporary file and
  // checked against the object's size and ETag and the record's stored size; the descriptor is
  // at offset 0. Reports why not (not uploaded, a mismatch, a failed request).
  std::expected<common::UniqueFd, Exit>
  download_core(const Located& where, const common::Record& record, bool quiet) const;

  // s3://BUCKET/KEY of a crash's record (Suffix::record) or core (Suffix::core); "" when the
  // crash is not in the catalog, or its index says it has no core.
  enum class Suffix { record, core, report };
  std::string url_of(const Located& where, Suffix suffix) const;

  // True when the core object of a crash is in the bucket (one HEAD).
  bool core_uploaded(const Located& where) const;

  // The crashes of the last catalog loaded (load_ids() loads every one) whose signature is
  // `signature`, with their places, ids, times and signatures: a group, for info's changes.
  Catalog group(const std::string& signature) const;

private:
  struct Entry;
  const Entry* entry(const Located& where) const;
  std::string key_of(const Entry& e, const std::string& id, Suffix suffix) const;
  std::string key(const Located& where, Suffix suffix) const; // "" as url_of()

  RemoteAccess m_access;
  std::unique_ptr<common::s3::Client> m_client;
  std::map<std::string, Entry> m_entries; // by id, every crash of the last catalog loaded
  bool m_everything = false;              // the last catalog was loaded without a filter
};

} // namespace cli
