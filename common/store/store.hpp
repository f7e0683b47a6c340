// The on-disk store: <root>/<host>/<executable>/<id>.core.zst + <id>.json.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace common {

inline constexpr std::string_view k_core_suffix = ".core.zst";
inline constexpr std::string_view k_record_suffix = ".json";
// The runtime's own crash report kept beside the record (hs_err, RUBY_CRASH_REPORT…): the
// core's mode and access. Not a record; it goes with its core and its record.
inline constexpr std::string_view k_report_suffix = ".report";
// The most of a runtime's report the handler keeps; a reader takes nothing larger from the store.
inline constexpr size_t k_max_report_bytes = 256 << 10;
inline constexpr const char* k_usage_name = ".usage";

// The usage file's text, "<bytes> <epoch seconds of the last full walk>\n", as written by the
// handler; the store's owner can write anything there. Both numbers plain decimal, nothing
// else; nullopt otherwise (a "-1" must not read as 2^64 - 1 bytes and starve every core).
struct UsageValue {
  uint64_t bytes = 0;
  int64_t walked = 0;
};
std::optional<UsageValue> parse_usage(std::string_view text);
inline constexpr unsigned k_dir_mode = 0750;  // the store user and its group (the exporter)
inline constexpr unsigned k_file_mode = 0640; // records: the store user and its group (exporter)
// Cores hold process memory (of setuid programs too): the store user only, not its group, which
// the exporter runs as and which never needs a core. corectl reads them as root.
inline constexpr unsigned k_core_mode = 0600;

// A new record id: 16 random hex characters (unique; any prefix works like a git hash).
std::string new_record_id();
// True when `id` has the form new_record_id() produces.
bool is_record_id(std::string_view id);

// One record found in the store.
struct StoreEntry {
  std::string host; // sanitized component
  std::string exe;  // sanitized component
  std::string id;
  int exe_dirfd = -1; // valid during the callback only
  bool has_core = false;
};

class Store {
public:
  // Opens an existing store root as a directory descriptor (O_PATH is not enough: we list it),
  // or, for a caller who may only traverse it, as an O_PATH one (nothing lists it then).
  static Expected<Store> open(const std::string& root);

  int fd() const { return m_fd.get(); }
  const std::string& root() const { return m_root; }

  // Opens (creating where missing, mode k_dir_mode) the directory <host>/<exe>. Both must be
  // safe components (see names.hpp); symlinks are never followed.
  Expected<UniqueFd> open_exe_dir(const std::string& host, const std::string& exe) const;

  // Which <host>/<exe> directories a walk visits: only names names.hpp could have produced, or
  // every directory (to account for all the space, or clean up whatever is there).
  enum class Listing { ours, all };

  // The part of the store a walk covers.
  struct WalkScope {
    Listing listing = Listing::ours;
    std::string host; // only this host, opened by name (the root is not listed); "" = every host
    std::string exe;  // only this executable, opened by name in each host; "" = every one
  };

  // What a walk reports besides the directories it visits; every callback may be left empty.
  // `rel` is the path below the store root ("host" or "host/exe").
  struct WalkEvents {
    // A host directory opened, before it is listed (the exporter watches it there, so that an
    // executable directory created between the listing and the watch is not missed).
    std::function<void(std::string_view host)> host_opened;
    // A name that is not a store directory and is never entered: one names.hpp does not produce
    // (Listing::ours; err 0), a symbolic link (ELOOP) or something else than a directory
    // (ENOTDIR). The store's owner put it there; not an I/O failure.
    std::function<void(std::string_view rel, int err)> foreign;
    // A directory that could not be opened or listed (EACCES, EIO…); the walk goes on without
    // it (or with the part of its listing read before the failure).
    std::function<void(std::string_view rel, const Error& error)> failed;
  };

  using ExeDirFn = std::function<void(std::string_view host, std::string_view exe, int dirfd)>;

  // The one walk of the store, shared by every reader: calls `fn(host, exe, dirfd)` for each
  // <host>/<exe> directory in `scope`, each component opened without following a link (the
  // descriptor is valid during the call only). A name gone since it was listed (ENOENT) is
  // skipped. Returns the number of directories that failed (each reported to events.failed),
  // or an error with errno when the store root itself cannot be listed.
  Expected<size_t> walk(const WalkScope& scope, const WalkEvents& events, const ExeDirFn& fn) const;

  // Calls `fn` for every <id>.json in the store (Listing::ours), in no particular order.
  // Hidden and foreign names are skipped; failures are reported and counted as by walk().
  Expected<size_t> for_each_record(const std::function<void(const StoreEntry&)>& fn,
                                   const WalkEvents& events = {}) const;

  // Bytes used by the files of the store (allocated blocks): walks the whole store.
  uint64_t disk_usage() const;

  // disk_usage() as of at most `max_age` seconds ago, from <store>/.usage (updated under an
  // flock that is never waited for long: when someone holds it, the file is read unlocked and
  // left alone), walking the store only when that is older. Each crash would otherwise stat
  // every file of a large store while the crashed process waits.
  uint64_t usage_estimate(unsigned max_age) const;
  // Adds `bytes` just written to the estimate.
  void add_usage(uint64_t bytes) const;

private:
  Store(std::string root, UniqueFd fd) : m_root(std::move(root)), m_fd(std::move(fd)) {}

  std::string m_root;
  UniqueFd m_fd;
};

// The path of a core or record relative to the store root.
std::string core_relpath(const std::string& host, const std::string& exe, const std::string& id);
std::string record_relpath(const std::string& host, const std::string& exe, const std::string& id);
std::string report_relpath(const std::string& host, const std::string& exe, const std::string& id);

// Free and total bytes of the file system holding `fd` (for the unprivileged user).
struct FsSpace {
  uint64_t available = 0;
  uint64_t total = 0;
};
Expected<FsSpace> fs_space(int fd);

} // namespace common
