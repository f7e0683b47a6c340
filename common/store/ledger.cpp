#include "common/store/ledger.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/base/json_bounds.hpp"
#include "common/base/signals.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace common {

namespace {

using nlohmann::json;

constexpr int k_ledger_schema = 1;
// Big enough for millions of series; a ledger beyond it is not ours.
constexpr size_t k_ledger_limit = 256ULL << 20;

// A directory descriptor we may list and lock, never through a symlink.
Expected<UniqueFd> open_dir(int parent, const std::string& name) {
  return open_at(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

// Whether <id>.json is there; an error (with errno) when that cannot be told: a record that
// cannot be seen must not be taken for a removed one.
Expected<bool> record_exists(int exe_dirfd, const std::string& id) {
  struct stat st {};
  const std::string name = id + std::string(k_record_suffix);
  if (::fstatat(exe_dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return true;
  }
  if (errno == ENOENT) {
    return false;
  }
  return fail_errno("Failed to stat " + quoted(name), errno);
}

void merge_time(SeriesTimes& t, int64_t time) {
  if (time <= 0) {
    return;
  }
  t.first = t.first == 0 ? time : std::min(t.first, time);
  t.last = std::max(t.last, time);
}

// Held for the whole of retire_records(): two retirers that read the same ledger would each
// write back their own counts and lose the other's.
class StoreLock {
public:
  static Expected<StoreLock> take(const Store& store) {
    auto fd = open_dir(store.fd(), ".");
    if (!fd) {
      return std::unexpected(fd.error());
    }
    while (::flock(fd->get(), LOCK_EX) != 0) {
      if (errno != EINTR) {
        return fail_errno("Failed to lock store " + quoted(store.root()), errno);
      }
    }
    return StoreLock(std::move(*fd));
  }

private:
  explicit StoreLock(UniqueFd fd) : m_fd(std::move(fd)) {}
  UniqueFd m_fd; // closing it releases the lock
};

} // namespace

SeriesKey series_of(const Record& r) {
  return SeriesKey{r.hostname, r.executable,
                   r.signal_name.empty() ? signal_name(r.signal) : r.signal_name, r.core.present};
}

Expected<Ledger> parse_ledger(std::string_view text) {
  // Written by the store's owner, read by root's vacuum and the exporter: bounded before a DOM.
  if (const std::string why = json_bounds_error(text, k_ledger_limit); !why.empty()) {
    return fail("ledger is " + why);
  }
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return fail("ledger is not a JSON object");
  }
  try {
    if (j.value("schema", 0) != k_ledger_schema) {
      return fail("ledger has an unsupported schema");
    }
    Ledger ledger;
    for (const auto& s : j.value("series", json::array())) {
      SeriesKey key{s.at("hostname").get<std::string>(), s.at("executable").get<std::string>(),
                    s.at("signal").get<std::string>(), s.at("core_present").get<bool>()};
      ledger.counts[key] += s.at("count").get<uint64_t>();
      SeriesTimes& t = ledger.times[key];
      merge_time(t, s.value("first", int64_t{0}));
      merge_time(t, s.value("last", int64_t{0}));
    }
    for (const auto& id : j.value("pending", json::array())) {
      ledger.pending.insert(id.get<std::string>());
    }
    return ledger;
  } catch (const json::exception& e) {
    return fail(std::string("ledger is malformed: ") + e.what());
  }
}

std::string ledger_to_text(const Ledger& ledger) {
  json series = json::array();
  for (const auto& [key, count] : ledger.counts) {
    json s = {{"hostname", key.hostname},
              {"executable", key.executable},
              {"signal", key.signal},
              {"core_present", key.core_present},
              {"count", count}};
    if (auto it = ledger.times.find(key); it != ledger.times.end()) {
      s["first"] = it->second.first;
      s["last"] = it->second.last;
    }
    series.push_back(std::move(s));
  }
  const json j = {{"schema", k_ledger_schema},
                  {"series", std::move(series)},
                  {"pending", json(ledger.pending)}};
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Expected<Ledger> read_ledger(const Store& store) {
  const std::string path = store.root() + "/" + k_ledger_name;
  // The store user controls this file and root's vacuum reads it: no symlink, and O_NONBLOCK so
  // a FIFO put in its place cannot hang the read (it fails the S_ISREG check instead).
  auto fd = open_at(store.fd(), k_ledger_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    if (fd.error().sys_errno == ENOENT) {
      return Ledger{};
    }
    return std::unexpected(fd.error());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return fail_errno("Failed to stat " + quoted(path), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail("Failed to read ledger " + quoted(path) + ": not a regular file");
  }
  auto text = read_fd(fd->get(), path, k_ledger_limit);
  if (!text) {
    return std::unexpected(text.error());
  }
  auto ledger = parse_ledger(*text);
  if (!ledger) {
    return fail("Failed to read ledger " + quoted(path) + ": " + ledger.error().message);
  }
  return ledger;
}

Expected<void> write_ledger(const Store& store, const Ledger& ledger) {
  // The exporter reads the ledger as the store user after a restart; a vacuum run by root must
  // leave it owned like the store root, as remove_core() keeps the owner of records.
  struct stat st {};
  if (::fstat(store.fd(), &st) != 0) {
    return fail_errno("Failed to stat " + quoted(store.root()), errno);
  }
  auto file = AtomicFile::create(store.fd(), k_ledger_name, k_file_mode);
  if (!file) {
    return std::unexpected(file.error());
  }
  // EPERM: an unprivileged writer (the store user) cannot give files away, and need not.
  if (::fchown(file->fd(), st.st_uid, st.st_gid) != 0 && errno != EPERM) {
    return fail_errno("Failed to give " + quoted(store.root() + "/" + k_ledger_name) +
                          " to the store owner",
                      errno);
  }
  // Set explicitly so the exporter's group can read it whatever our umask is.
  if (::fchmod(file->fd(), k_file_mode) != 0) {
    return fail_errno("Failed to set the mode of " + quoted(store.root() + "/" + k_ledger_name),
                      errno);
  }
  if (auto w = file->write(ledger_to_text(ledger)); !w) {
    return w;
  }
  return file->commit(Replace::yes);
}

Expected<size_t> retire_records(const Store& store, const std::vector<RetireItem>& items) {
  auto lock = StoreLock::take(store);
  if (!lock) {
    return std::unexpected(lock.error());
  }
  auto ledger = read_ledger(store);
  if (!ledger) {
    return std::unexpected(ledger.error());
  }
  const std::set<std::string> earlier_pending = ledger->pending;

  // Exe directories stay open for the call; a vacuum touches few of them many times.
  std::map<std::pair<std::string, std::string>, UniqueFd> dirs;
  auto exe_dir = [&](const RetireItem& item) -> int {
    auto key = std::make_pair(item.host, item.exe);
    if (auto it = dirs.find(key); it != dirs.end()) {
      return it->second.get();
    }
    int fd = -1;
    if (auto host = open_dir(store.fd(), item.host)) {
      if (auto exe = open_dir(host->get(), item.exe)) {
        fd = exe->get();
        dirs.emplace(key, std::move(*exe));
        return fd;
      }
    }
    dirs.emplace(key, UniqueFd());
    return fd;
  };

  // 1. Count each crash in the ledger and mark it pending, before anything is removed. An item
  // already pending was counted by an earlier, interrupted run; an item whose record is gone was
  // retired by someone else since the caller listed the store. Neither is counted again.
  std::vector<const RetireItem*> todo;
  for (const auto& item : items) {
    const int dfd = exe_dir(item);
    if (dfd < 0 || !record_exists(dfd, item.id).value_or(false)) {
      continue; // gone, or not to be seen: not retired by this run
    }
    if (ledger->pending.insert(item.id).second) {
      ledger->counts[item.key] += 1;
      merge_time(ledger->times[item.key], item.time);
    }
    todo.push_back(&item);
  }
  if (todo.empty()) {
    return size_t{0};
  }
  if (auto w = write_ledger(store, *ledger); !w) {
    return std::unexpected(w.error());
  }

  // 2. Remove cores, then records: the record goes last so that an interruption leaves a record
  // (pending, counted once) that the next run retires, never a core nobody lists. Directories
  // are left in place: the handler may be about to link a new file into one.
  size_t removed = 0;
  for (const RetireItem* item : todo) {
    const int dfd = exe_dir(*item);
    const std::string core = item->id + std::string(k_core_suffix);
    const std::string record = item->id + std::string(k_record_suffix);
    if (::unlinkat(dfd, core.c_str(), 0) != 0 && errno != ENOENT) {
      continue; // the record stays, pending: counted once, retried by the next run
    }
    if (::unlinkat(dfd, record.c_str(), 0) == 0 || errno == ENOENT) {
      ++removed;
    }
  }

  // 3. Drop from `pending` every id whose record is gone. Ids left pending by an interrupted
  // earlier run are checked too (a listing, no reads), so the set does not grow forever.
  std::set<std::string> still_there;
  for (const RetireItem* item : todo) {
    if (record_exists(exe_dir(*item), item->id).value_or(true)) { // unknown: still pending
      still_there.insert(item->id);
    }
  }
  std::set<std::string> earlier_unknown = earlier_pending;
  for (const RetireItem* item : todo) {
    earlier_unknown.erase(item->id);
  }
  if (!earlier_unknown.empty()) {
    const auto walked = store.for_each_record([&](const StoreEntry& e) {
      if (earlier_unknown.contains(e.id)) {
        still_there.insert(e.id);
      }
    });
    if (!walked || *walked > 0) {
      // Part of the store unseen: its records may still be there, and dropping their ids from
      // `pending` would count those crashes twice (in the ledger and live). They stay pending.
      still_there.insert(earlier_unknown.begin(), earlier_unknown.end());
    }
  }
  ledger->pending = std::move(still_there);
  if (auto w = write_ledger(store, *ledger); !w) {
    // Still consistent: the removed ids stay pending, which only costs space in the ledger.
    return std::unexpected(w.error());
  }
  return removed;
}

} // namespace common
