#include "exporter/index_sync.hpp"

#include "common/base/escape.hpp"
#include "common/base/io.hpp"
#include "exporter/record_row.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

namespace exporter {

namespace {

using common::index::Access;
using common::index::DirState;
using common::index::Index;

constexpr int k_dir_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
// A directory changed in the last two seconds is not indexed yet: a second change in the same
// timestamp tick would leave its mtime (and, for a rename over a record, its entry count) as the
// row says, and a reader would trust a stale row. Its row is written once it has been quiet.
constexpr int64_t k_quiet_ns = 2'000'000'000;
// Rows written in one transaction during a scan: few commits, and a bounded batch in memory.
constexpr size_t k_batch_records = 4096;
// Pending directories are looked at again this often; a failed write (disk full) waits longer.
constexpr int k_flush_ms = 1000;
constexpr auto k_retry = std::chrono::seconds(5);
// A reader (a second exporter) tries to become the writer this often, in case the first is gone.
constexpr auto k_takeover = std::chrono::seconds(5);
constexpr int k_takeover_ms = 5'000;
// Beyond this many changed records a directory is read whole: the set stays bounded.
constexpr size_t k_max_dirty_ids = 4096;

int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string index_relpath() {
  return std::string(common::index::k_index_dir) + "/" + common::index::k_index_file;
}

} // namespace

IndexSync::IndexSync(const common::Store& store) : m_store(&store) {
  reopen(store, nullptr);
}

IndexSync::Stamp IndexSync::stamp_now(const common::Store& store, struct stat& st) const {
  Stamp out;
  if (::fstatat(store.fd(), index_relpath().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    st = {};
    return out;
  }
  out = Stamp{st.st_dev, st.st_ino, st.st_size,
              int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec};
  struct stat wal {};
  if (::fstatat(store.fd(), (index_relpath() + "-wal").c_str(), &wal, AT_SYMLINK_NOFOLLOW) == 0) {
    out.wal_size = wal.st_size;
    out.wal_mtime_ns = int64_t{wal.st_mtim.tv_sec} * 1'000'000'000 + wal.st_mtim.tv_nsec;
  }
  return out;
}

void IndexSync::stamp_file(const common::Store& store) {
  struct stat st {};
  m_file = stamp_now(store, st);
}

std::unique_ptr<IndexSync> IndexSync::open(const common::Store& store) {
  return std::unique_ptr<IndexSync>(new IndexSync(store));
}

bool IndexSync::reopen(const common::Store& store, const char* why) {
  // Our own lock goes first: flock() locks belong to the open file, so a second open of ours
  // would find the lock held, by us.
  m_index.reset();
  auto index = Index::open(store.fd(), store.root(), Access::write);
  std::string write_error;
  if (!index) {
    write_error = index.error().message;
    index = Index::open(store.fd(), store.root(), Access::read);
  }
  if (!index) {
    if (why) {
      spdlog::warn("the store's index {} and cannot be written ({}); counting from the files", why,
                   common::printable(write_error));
    } else {
      spdlog::info("not using the store's index ({}); counting from the files",
                   common::printable(write_error));
    }
    return false;
  }
  m_index = std::move(*index);
  if (!m_index->rebuilt().empty()) {
    spdlog::warn("rebuilding the store's index ({}); its directories are read from the files",
                 common::printable(m_index->rebuilt()));
  } else if (why) {
    spdlog::warn("the store's index {}; writing it again from the files", why);
  }
  if (m_index->access() == Access::read) {
    spdlog::info("the store's index has another writer ({}); reading it only",
                 common::printable(write_error));
    m_takeover_at = std::chrono::steady_clock::now() + k_takeover;
  }
  stamp_file(store);
  m_dirty.clear();
  m_batch.clear();
  m_batch_records = 0;
  m_failing = false;
  return true;
}

void IndexSync::begin_scan() {
  m_stored.clear();
  if (!m_index) {
    return;
  }
  if (auto states = m_index->states()) {
    m_stored = std::move(*states);
  }
}

std::optional<std::vector<IndexSync::IndexedRecord>> IndexSync::rows_if(const DirKey& key,
                                                                        const DirState& state) {
  if (!m_index) {
    return std::nullopt;
  }
  auto stored = m_stored.find(key);
  if (stored == m_stored.end() || stored->second != state) {
    return std::nullopt;
  }
  auto dir = m_index->dir(key);
  if (!dir || !*dir || (*dir)->state != state) {
    return std::nullopt;
  }
  auto& records = (*dir)->records;
  if (std::any_of(records.begin(), records.end(), [](const auto& r) { return !r.form; })) {
    return std::nullopt; // a reader's rows: what the exporter counts is not in them
  }
  return std::move(records);
}

void IndexSync::fresh(const DirKey& key, IndexedDir&& dir) {
  if (!writer()) {
    return;
  }
  if (dir.state.mtime_ns > realtime_ns() - k_quiet_ns) {
    stale(key, true);
    return;
  }
  m_batch_records += dir.records.size();
  m_batch.emplace_back(key, std::move(dir));
  if (m_batch_records >= k_batch_records) {
    write_batch(nullptr);
  }
}

void IndexSync::stale(const DirKey& key, bool whole) {
  if (!writer()) {
    return;
  }
  Dirty& d = m_dirty[key];
  (whole ? d.whole : d.check) = true;
}

void IndexSync::changed(const DirKey& key, const std::string& id) {
  if (!writer()) {
    return;
  }
  Dirty& d = m_dirty[key];
  if (d.whole) {
    return;
  }
  d.ids.insert(id);
  if (d.ids.size() > k_max_dirty_ids) {
    d.whole = true;
    d.ids.clear();
  }
}

void IndexSync::end_scan(const std::set<DirKey>* present) {
  write_batch(present);
  m_stored.clear();
}

void IndexSync::write_failed(const common::Error& e) {
  if (!m_failing) {
    spdlog::error("{}; the counts are unaffected, the index is written again in {} s",
                  common::printable(e.message), k_retry.count());
  }
  m_failing = true;
  m_retry_at = std::chrono::steady_clock::now() + k_retry;
}

void IndexSync::write_batch(const std::set<DirKey>* present) {
  if (!writer() || (m_batch.empty() && !present)) {
    return;
  }
  std::set<DirKey> keep;
  if (present) {
    keep = *present;
  } else if (auto states = m_index->states()) {
    for (const auto& [key, state] : *states) {
      keep.insert(key);
    }
  }
  for (const auto& [key, dir] : m_batch) {
    keep.insert(key);
  }
  if (auto written = m_index->update(m_batch, keep); !written) {
    write_failed(written.error());
    for (const auto& [key, dir] : m_batch) {
      m_dirty[key].whole = true;
    }
  } else {
    stamp_file(*m_store);
    if (m_failing) {
      spdlog::info("the store's index is written again");
      m_failing = false;
    }
  }
  m_batch.clear();
  m_batch_records = 0;
}

bool IndexSync::healthy(const common::Store& store) {
  struct stat root {};
  struct stat st {};
  const Stamp now = stamp_now(store, st);
  const char* problem = nullptr;
  if (::fstat(store.fd(), &root) != 0 || now.ino == 0) {
    problem = "was removed";
  } else if (!S_ISREG(st.st_mode)) {
    problem = "was replaced by something else than a file";
  } else if (st.st_uid != root.st_uid) {
    problem = "changed owner";
  } else if (now.dev != m_file.dev || now.ino != m_file.ino) {
    problem = "was replaced";
  } else if (now != m_file) {
    // Written by someone else since our last write (ours are stamped): nobody else writes it
    // while we hold the writer's lock, so whatever it holds now is not ours to trust. Its WAL
    // may still hide the damage from any check (the pages there are read first), so it goes.
    if (auto ok = m_index->verify(); !ok) {
      spdlog::warn("the store's index failed its check ({})",
                   common::printable(ok.error().message));
    }
    problem = "was written by another process";
    m_index.reset();
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      ::unlinkat(store.fd(), (index_relpath() + suffix).c_str(), 0);
    }
  }
  if (!problem) {
    return true;
  }
  reopen(store, problem);
  return false;
}

IndexSync::Flushed IndexSync::flush(const common::Store& store,
                                    const std::function<std::vector<DirKey>()>& all_dirs) {
  Flushed out;
  const auto now = std::chrono::steady_clock::now();
  if (!writer()) {
    if (now >= m_takeover_at) {
      m_takeover_at = now + k_takeover;
      // A writer's lock is free again (the other exporter stopped): ours to keep current.
      if (auto index = Index::open(store.fd(), store.root(), Access::write)) {
        m_index = std::move(*index);
        stamp_file(store);
        spdlog::info("writing the store's index{}",
                     m_index->rebuilt().empty() ? "" : " (rebuilt: " + m_index->rebuilt() + ")");
        for (const auto& key : all_dirs()) {
          m_dirty[key].check = true;
        }
        out.reopened = true;
      }
    }
    if (!writer()) {
      out.next_ms = k_takeover_ms;
      return out;
    }
  }
  if (m_suspect) {
    m_suspect = false;
    if (!healthy(store)) {
      out.reopened = true;
      if (!writer()) {
        out.next_ms = k_takeover_ms;
        return out;
      }
      // Every directory is compared with what the new file holds (nothing, when rebuilt).
      for (const auto& key : all_dirs()) {
        m_dirty[key].check = true;
      }
    }
  }
  if (now < m_retry_at) {
    out.next_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(m_retry_at - now).count() + 1);
    return out;
  }
  write_batch(nullptr);
  // States first, in one query: most compared directories are unchanged.
  std::map<DirKey, DirState> stored;
  std::set<DirKey> formless; // a reader's rows (corectl's): rewritten whatever the state
  if (std::any_of(m_dirty.begin(), m_dirty.end(),
                  [](const auto& kv) { return kv.second.check && !kv.second.whole; })) {
    auto states = m_index->states();
    auto without = m_index->formless();
    if (states && without) {
      stored = std::move(*states);
      formless = std::move(*without);
    }
  }
  const int64_t now_ns = realtime_ns();
  for (auto it = m_dirty.begin(); it != m_dirty.end() && now >= m_retry_at;) {
    Dirty& d = it->second;
    if (d.check && !d.whole && d.ids.empty()) {
      // Unchanged since the index last saw it: nothing to write.
      auto s = formless.contains(it->first) ? stored.end() : stored.find(it->first);
      auto dfd = common::open_at(store.fd(), it->first.first + "/" + it->first.second, k_dir_flags);
      if (s != stored.end() && dfd) {
        if (auto state = common::index::dir_state(dfd->get()); state && *state == s->second) {
          it = m_dirty.erase(it);
          continue;
        }
      }
    }
    if (sync_dir(store, it->first, d, now_ns)) {
      it = m_dirty.erase(it);
    } else {
      ++it;
    }
  }
  if (!m_dirty.empty()) {
    out.next_ms = k_flush_ms;
  }
  return out;
}

bool IndexSync::sync_dir(const common::Store& store, const DirKey& key, Dirty& dirty,
                         int64_t now_ns) {
  const auto& [host, exe] = key;
  auto forget = [&]() {
    if (auto gone = m_index->forget(key); !gone) {
      write_failed(gone.error());
      return false;
    }
    stamp_file(store);
    return true;
  };
  auto dfd = common::open_at(store.fd(), host + "/" + exe, k_dir_flags);
  if (!dfd) {
    return forget(); // gone (or no longer ours to read): readers read what is there
  }
  struct stat st {};
  if (::fstat(dfd->get(), &st) != 0) {
    return forget();
  }
  DirState state;
  state.ino = static_cast<uint64_t>(st.st_ino);
  state.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  if (state.mtime_ns > now_ns - k_quiet_ns) {
    return false; // changing now: indexed once it has been quiet
  }
  std::set<std::string> ids;
  auto listed = common::list_dir(
      dfd->get(),
      [&](std::string_view name) {
        ++state.entries;
        if (name.ends_with(common::k_record_suffix)) {
          const auto id = name.substr(0, name.size() - common::k_record_suffix.size());
          if (common::is_record_id(id)) {
            ids.emplace(id);
          }
        }
      },
      common::Hidden::include);
  if (!listed) {
    return forget();
  }
  auto stored = m_index->dir(key);
  if (!stored) {
    write_failed(stored.error());
    return false;
  }
  std::set<std::string> stored_ids;
  bool whole = dirty.whole || !*stored;
  if (*stored) {
    for (const auto& r : (*stored)->records) {
      stored_ids.insert(r.id);
      whole = whole || !r.form;
    }
    whole = whole || (dirty.check && (*stored)->state != state);
  }
  std::vector<std::string> removed;
  std::set_difference(stored_ids.begin(), stored_ids.end(), ids.begin(), ids.end(),
                      std::back_inserter(removed));
  std::vector<IndexedRecord> rows;
  for (const auto& id : ids) {
    if (!whole && stored_ids.contains(id) && !dirty.ids.contains(id)) {
      continue;
    }
    auto row = read_record_row(dfd->get(), host, exe, id);
    if (!row) {
      // Gone since the listing: the directory changed again, and is indexed once quiet.
      // Anything else: a record that cannot be read is left to readers, who read the files.
      return row.error().sys_errno == ENOENT ? false : forget();
    }
    rows.push_back(std::move(*row));
  }
  if (auto patched = m_index->patch(key, state, rows, removed); !patched) {
    write_failed(patched.error());
    return false;
  }
  stamp_file(store);
  if (m_failing) {
    spdlog::info("the store's index is written again");
    m_failing = false;
  }
  return true;
}

} // namespace exporter
