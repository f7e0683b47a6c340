#include "common/store/ledger.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/base/json_bounds.hpp"
#include "common/base/signals.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <utility>

namespace common {

namespace {

using nlohmann::json;

constexpr int k_ledger_schema = 1;
// What the file reader asks of the kernel at once.
constexpr size_t k_read_chunk = 64 << 10;
// What the writer gathers before writing it out.
constexpr size_t k_write_chunk = 64 << 10;

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

// The bytes the parser reads: a text in memory, or a file read in chunks from its start. Both
// stop at k_ledger_limit, and at a token longer than k_max_ledger_token: nlohmann's lexer keeps
// the token it reads in one string, and the SAX handler marks every token it is given, so the
// bytes read since the last mark are what that string can hold.
class LedgerInput {
public:
  explicit LedgerInput(std::string_view text) : m_data(text) {}
  LedgerInput(int fd, const std::string& path) : m_fd(fd), m_path(path), m_chunk(k_read_chunk) {}

  // The next byte; false at the end of the input or at a limit (then error() says which).
  bool next(char& c) {
    if (m_pos == m_data.size() && !refill()) {
      return false;
    }
    if (++m_total > k_ledger_limit) {
      m_error = Error{"ledger is larger than " + std::to_string(k_ledger_limit) + " bytes", 0};
      return false;
    }
    if (++m_since_mark > k_max_ledger_token + 16) { // a token plus what separates two
      m_error = Error{
          "ledger has a token longer than " + std::to_string(k_max_ledger_token) + " bytes", 0};
      return false;
    }
    c = m_data[m_pos++];
    return true;
  }
  void mark() { m_since_mark = 0; }
  const std::optional<Error>& error() const { return m_error; }

private:
  bool refill() {
    if (m_fd < 0 || m_error) {
      return false;
    }
    auto n = read_some(m_fd, std::as_writable_bytes(std::span(m_chunk)));
    if (!n) {
      m_error = Error::from_errno("Failed to read " + common::quoted(m_path), n.error().sys_errno);
      return false;
    }
    m_data = std::string_view(m_chunk.data(), *n);
    m_pos = 0;
    return *n > 0;
  }

  int m_fd = -1;
  std::string m_path;
  std::vector<char> m_chunk;
  std::string_view m_data;
  size_t m_pos = 0;
  size_t m_total = 0;
  size_t m_since_mark = 0;
  std::optional<Error> m_error;
};

// An input iterator over a LedgerInput, the form nlohmann::json::sax_parse reads from.
class InputIterator {
public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  InputIterator() = default; // the end
  explicit InputIterator(LedgerInput* in) : m_in(in) { ++*this; }
  reference operator*() const { return m_c; }
  InputIterator& operator++() {
    if (m_in != nullptr && !m_in->next(m_c)) {
      m_in = nullptr;
    }
    return *this;
  }
  bool operator==(const InputIterator& other) const { return m_in == other.m_in; }

private:
  LedgerInput* m_in = nullptr;
  char m_c = 0;
};

// The SAX handler: a state machine over {"schema": 1, "series": [{...}...], "pending": [ids]}
// that hands each entry over once complete. Unknown keys are skipped, whatever their value
// (a newer writer's); known ones must have the types ledger_to_text() writes.
class LedgerSax {
public:
  LedgerSax(const LedgerVisitor& visit, LedgerInput& in) : m_visit(visit), m_in(in) {}

  // The first thing wrong with the ledger, once the parse is over; empty when nothing was.
  std::string problem() const {
    if (!m_problem.empty()) {
      return m_problem;
    }
    if (m_not_object) {
      return "ledger is not a JSON object";
    }
    if (m_schema != k_ledger_schema) {
      return "ledger has an unsupported schema";
    }
    return {};
  }

  bool null() { return scalar(Value::null); }
  bool boolean(bool v) {
    m_bool = v;
    return scalar(Value::boolean);
  }
  bool number_integer(json::number_integer_t v) {
    m_int = v;
    return scalar(Value::integer);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    m_uint = v;
    return scalar(Value::unsigned_integer);
  }
  bool number_float(json::number_float_t, const std::string&) { return scalar(Value::other); }
  bool string(std::string& v) {
    m_string = &v;
    return scalar(Value::string);
  }
  bool binary(json::binary_t&) { return scalar(Value::other); }

  bool key(std::string& k) {
    m_in.mark();
    if (m_skip == 0) {
      m_key = std::move(k);
    }
    return true;
  }

  bool start_object(size_t) {
    if (!enter()) {
      return false;
    }
    if (m_skip > 0) {
      ++m_skip;
      return true;
    }
    switch (m_where) {
    case Where::start:
      m_where = Where::top;
      return true;
    case Where::series:
      m_where = Where::entry;
      m_entry = {};
      m_fields = 0;
      return true;
    default:
      return container_value();
    }
  }

  bool end_object() {
    m_in.mark();
    --m_depth;
    if (m_skip > 0) {
      --m_skip;
      return true;
    }
    if (m_where == Where::entry) {
      if (m_fields != k_required_fields) {
        return fail("ledger is malformed: a series lacks one of hostname, executable, signal, "
                    "core_present, count");
      }
      if (m_visit.series) {
        m_visit.series(std::move(m_entry));
      }
      m_where = Where::series;
      return true;
    }
    m_where = Where::done;
    return true;
  }

  bool start_array(size_t) {
    if (!enter()) {
      return false;
    }
    if (m_skip > 0) {
      ++m_skip;
      return true;
    }
    if (m_where == Where::top && (m_key == "series" || m_key == "pending")) {
      m_where = m_key == "series" ? Where::series : Where::pending;
      return true;
    }
    return container_value();
  }

  bool end_array() {
    m_in.mark();
    --m_depth;
    if (m_skip > 0) {
      --m_skip;
      return true;
    }
    m_where = Where::top; // the end of "series" or "pending"
    return true;
  }

  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception&) {
    return fail("ledger is not valid JSON (at byte " + std::to_string(position) + ")");
  }

private:
  enum class Where { start, top, series, entry, pending, done };
  enum class Value { null, boolean, integer, unsigned_integer, string, other };
  enum Field : unsigned { hostname = 1, executable = 2, signal = 4, core_present = 8, count = 16 };
  static constexpr unsigned k_required_fields = 31;

  bool fail(std::string why) {
    if (m_problem.empty()) {
      m_problem = std::move(why);
    }
    return false;
  }

  // One level deeper: refused past the depth every store reader allows.
  bool enter() {
    m_in.mark();
    if (++m_depth > k_max_json_depth) {
      return fail("ledger is nested deeper than " + std::to_string(k_max_json_depth) + " levels");
    }
    return true;
  }

  bool known_key() const {
    if (m_where == Where::top) {
      return m_key == "schema" || m_key == "series" || m_key == "pending";
    }
    return m_key == "hostname" || m_key == "executable" || m_key == "signal" ||
           m_key == "core_present" || m_key == "count" || m_key == "first" || m_key == "last";
  }

  bool wrong_type() {
    return fail("ledger is malformed: " + common::quoted(m_key) + " has the wrong type");
  }

  // An object or array as a value: skipped under an unknown key, wrong under a known one.
  bool container_value() {
    if (m_where == Where::start) {
      // Not an object: read on (its depth is still checked) and say so at the end.
      m_not_object = true;
      m_skip = 1;
      return true;
    }
    if ((m_where == Where::top || m_where == Where::entry) && !known_key()) {
      m_skip = 1;
      return true;
    }
    if (m_where == Where::series || m_where == Where::pending) {
      return fail("ledger is malformed: a list holds the wrong type");
    }
    return wrong_type();
  }

  bool scalar(Value v) {
    m_in.mark();
    if (m_skip > 0) {
      return true;
    }
    switch (m_where) {
    case Where::start:
      m_not_object = true;
      return true;
    case Where::top:
      return top_value(v);
    case Where::entry:
      return entry_value(v);
    case Where::pending:
      if (v != Value::string) {
        return fail("ledger is malformed: a pending id is not a string");
      }
      if (m_visit.pending) {
        m_visit.pending(std::move(*m_string));
      }
      return true;
    case Where::series:
      return fail("ledger is malformed: a series is not an object");
    case Where::done:
      return true;
    }
    return true;
  }

  bool top_value(Value v) {
    if (m_key == "schema") {
      if (v == Value::unsigned_integer && m_uint <= 1000) {
        m_schema = static_cast<int>(m_uint);
      } else if (v == Value::integer) {
        m_schema = -1;
      } else {
        return wrong_type();
      }
      return true;
    }
    if (m_key == "series" || m_key == "pending") {
      // A null list is an empty one, as before.
      return v == Value::null ? true : wrong_type();
    }
    return true;
  }

  bool entry_value(Value v) {
    auto text = [&](std::string& to, Field f) {
      if (v != Value::string) {
        return wrong_type();
      }
      to = std::move(*m_string);
      m_fields |= f;
      return true;
    };
    if (m_key == "hostname") {
      return text(m_entry.key.hostname, hostname);
    }
    if (m_key == "executable") {
      return text(m_entry.key.executable, executable);
    }
    if (m_key == "signal") {
      return text(m_entry.key.signal, signal);
    }
    if (m_key == "core_present") {
      if (v != Value::boolean) {
        return wrong_type();
      }
      m_entry.key.core_present = m_bool;
      m_fields |= core_present;
      return true;
    }
    if (m_key == "count") {
      if (v != Value::unsigned_integer) {
        return wrong_type();
      }
      m_entry.count = m_uint;
      m_fields |= count;
      return true;
    }
    if (m_key == "first" || m_key == "last") {
      int64_t t = 0;
      if (v == Value::integer) {
        t = m_int;
      } else if (v == Value::unsigned_integer &&
                 m_uint <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        t = static_cast<int64_t>(m_uint);
      } else {
        return wrong_type();
      }
      merge_time(m_entry.times, t);
      return true;
    }
    return true;
  }

  const LedgerVisitor& m_visit;
  LedgerInput& m_in;
  Where m_where = Where::start;
  size_t m_depth = 0;
  size_t m_skip = 0; // > 0: inside a value that is skipped, this many levels deep
  std::string m_key;
  LedgerSeries m_entry;
  unsigned m_fields = 0;
  int m_schema = 0;
  bool m_not_object = false;
  std::string m_problem;
  // The scalar being handed over.
  bool m_bool = false;
  int64_t m_int = 0;
  uint64_t m_uint = 0;
  std::string* m_string = nullptr;
};

Expected<void> scan(LedgerInput& in, const LedgerVisitor& visit) {
  LedgerSax sax(visit, in);
  json::sax_parse(InputIterator(&in), InputIterator(), &sax);
  if (in.error()) {
    return std::unexpected(*in.error());
  }
  if (std::string why = sax.problem(); !why.empty()) {
    return fail(std::move(why));
  }
  return {};
}

// Opens the ledger the store's owner controls: no symlink, and O_NONBLOCK so that a FIFO put in
// its place cannot hang the read (it fails the S_ISREG check instead). nullopt when missing.
Expected<std::optional<UniqueFd>> open_ledger(const Store& store) {
  const std::string path = store.root() + "/" + k_ledger_name;
  auto fd = open_at(store.fd(), k_ledger_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    if (fd.error().sys_errno == ENOENT) {
      return std::optional<UniqueFd>();
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
  return std::optional<UniqueFd>(std::move(*fd));
}

Expected<void> scan_open_ledger(const Store& store, int fd, const LedgerVisitor& visit) {
  const std::string path = store.root() + "/" + k_ledger_name;
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    return fail_errno("Failed to read ledger " + quoted(path), errno);
  }
  LedgerInput in(fd, path);
  if (auto s = scan(in, visit); !s) {
    return fail("Failed to read ledger " + quoted(path) + ": " + s.error().message);
  }
  return {};
}

std::string series_text(const SeriesKey& key, uint64_t count, const SeriesTimes* times) {
  json s = {{"hostname", key.hostname},
            {"executable", key.executable},
            {"signal", key.signal},
            {"core_present", key.core_present},
            {"count", count}};
  if (times != nullptr) {
    s["first"] = times->first;
    s["last"] = times->last;
  }
  return s.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string id_text(const std::string& id) {
  return json(id).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Writes ledger text entry by entry, into a string or through an AtomicFile in chunks; the
// first failed write is kept and reported by finish().
class LedgerWriter {
public:
  explicit LedgerWriter(AtomicFile* file = nullptr) : m_file(file) {
    put("{\"schema\": " + std::to_string(k_ledger_schema) + ",\n \"series\": [");
  }
  void series(const SeriesKey& key, uint64_t count, const SeriesTimes* times) {
    put(std::exchange(m_first, false) ? "\n  " : ",\n  ");
    put(series_text(key, count, times));
  }
  void pending(const std::string& id) {
    if (!m_in_pending) {
      put("\n ],\n \"pending\": [");
      m_in_pending = true;
      m_first = true;
    }
    put(std::exchange(m_first, false) ? "\n  " : ",\n  ");
    put(id_text(id));
  }
  Expected<void> finish() {
    if (!m_in_pending) {
      put("\n ],\n \"pending\": [");
    }
    put("\n ]\n}\n");
    flush();
    return m_status;
  }
  std::string take() { return std::move(m_text); }

private:
  void put(std::string_view s) {
    m_text += s;
    if (m_file != nullptr && m_text.size() >= k_write_chunk) {
      flush();
    }
  }
  void flush() {
    if (m_file != nullptr && m_status && !m_text.empty()) {
      m_status = m_file->write(m_text);
    }
    if (m_file != nullptr) {
      m_text.clear();
    }
  }

  AtomicFile* m_file;
  std::string m_text;
  bool m_first = true;
  bool m_in_pending = false;
  Expected<void> m_status;
};

// A new ledger file in the store, owned like the store root (the exporter reads it as the store
// user after a root vacuum, as remove_core() keeps the owner of records), readable by its group.
Expected<AtomicFile> create_ledger_file(const Store& store) {
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
  return file;
}

// Rewrites the ledger from the open old one (`old` < 0: none) as a stream: each old series is
// copied with `add` folded into it (and the rest of `add` appended), each old pending id kept
// when `keep_pending` says so, then `more_pending` appended. Two passes over the old file,
// series then ids, so that the new one has them in that order whatever the old one's order.
// Nothing is committed unless the whole old ledger read well.
Expected<void> rewrite_ledger(const Store& store, int old, std::map<SeriesKey, LedgerSeries> add,
                              const std::function<bool(const std::string&)>& keep_pending,
                              const std::set<std::string>& more_pending) {
  auto file = create_ledger_file(store);
  if (!file) {
    return std::unexpected(file.error());
  }
  LedgerWriter out(&*file);
  if (old >= 0) {
    auto copied = scan_open_ledger(store, old,
                                   {[&](LedgerSeries&& s) {
                                      if (auto it = add.find(s.key); it != add.end()) {
                                        s.count += it->second.count;
                                        merge_time(s.times, it->second.times.first);
                                        merge_time(s.times, it->second.times.last);
                                        add.erase(it);
                                      }
                                      out.series(s.key, s.count, &s.times);
                                    },
                                    {}});
    if (!copied) {
      return copied;
    }
  }
  for (const auto& [key, s] : add) {
    out.series(key, s.count, &s.times);
  }
  if (old >= 0) {
    auto copied = scan_open_ledger(store, old, {{}, [&](std::string&& id) {
                                                  if (keep_pending(id)) {
                                                    out.pending(id);
                                                  }
                                                }});
    if (!copied) {
      return copied;
    }
  }
  for (const auto& id : more_pending) {
    out.pending(id);
  }
  if (auto w = out.finish(); !w) {
    return w;
  }
  return file->commit(Replace::yes);
}

} // namespace

SeriesKey series_of(const Record& r) {
  return SeriesKey{r.hostname, r.executable,
                   r.signal_name.empty() ? signal_name(r.signal) : r.signal_name, r.core.present};
}

Expected<void> scan_ledger(std::string_view text, const LedgerVisitor& visit) {
  LedgerInput in(text);
  return scan(in, visit);
}

namespace {

LedgerVisitor fold_into(Ledger& ledger) {
  return {[&](LedgerSeries&& s) {
            ledger.counts[s.key] += s.count;
            SeriesTimes& t = ledger.times[s.key];
            merge_time(t, s.times.first);
            merge_time(t, s.times.last);
          },
          [&](std::string&& id) { ledger.pending.insert(std::move(id)); }};
}

} // namespace

Expected<Ledger> parse_ledger(std::string_view text) {
  Ledger ledger;
  if (auto s = scan_ledger(text, fold_into(ledger)); !s) {
    return std::unexpected(s.error());
  }
  return ledger;
}

std::string ledger_to_text(const Ledger& ledger) {
  LedgerWriter out;
  for (const auto& [key, count] : ledger.counts) {
    const auto it = ledger.times.find(key);
    out.series(key, count, it != ledger.times.end() ? &it->second : nullptr);
  }
  for (const auto& id : ledger.pending) {
    out.pending(id);
  }
  (void)out.finish();
  return out.take();
}

Expected<void> scan_store_ledger(const Store& store, const LedgerVisitor& visit) {
  auto fd = open_ledger(store);
  if (!fd) {
    return std::unexpected(fd.error());
  }
  if (*fd) {
    return scan_open_ledger(store, (*fd)->get(), visit);
  }
  return {};
}

Expected<Ledger> read_ledger(const Store& store) {
  Ledger ledger;
  if (auto s = scan_store_ledger(store, fold_into(ledger)); !s) {
    return std::unexpected(s.error());
  }
  return ledger;
}

Expected<void> write_ledger(const Store& store, const Ledger& ledger) {
  auto file = create_ledger_file(store);
  if (!file) {
    return std::unexpected(file.error());
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
  // The ledger is never held in memory: it is read as a stream, once to learn which of our
  // items an interrupted run already counted, then again by each rewrite below.
  auto old = open_ledger(store);
  if (!old) {
    return std::unexpected(old.error());
  }
  std::set<std::string> item_ids;
  for (const auto& item : items) {
    item_ids.insert(item.id);
  }
  std::set<std::string> earlier_ours; // ids of items already pending
  size_t earlier_others = 0;          // other ids pending from an interrupted earlier run
  if (*old) {
    auto scanned = scan_open_ledger(store, (*old)->get(), {{}, [&](std::string&& id) {
                                                             if (item_ids.contains(id)) {
                                                               earlier_ours.insert(std::move(id));
                                                             } else {
                                                               ++earlier_others;
                                                             }
                                                           }});
    if (!scanned) {
      return std::unexpected(scanned.error());
    }
  }

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
  std::map<SeriesKey, LedgerSeries> add;
  std::set<std::string> new_pending;
  std::vector<const RetireItem*> todo;
  for (const auto& item : items) {
    const int dfd = exe_dir(item);
    if (dfd < 0 || !record_exists(dfd, item.id).value_or(false)) {
      continue; // gone, or not to be seen: not retired by this run
    }
    if (!earlier_ours.contains(item.id) && new_pending.insert(item.id).second) {
      LedgerSeries& s = add[item.key];
      s.key = item.key;
      s.count += 1;
      merge_time(s.times, item.time);
    }
    todo.push_back(&item);
  }
  if (todo.empty()) {
    return size_t{0};
  }
  if (auto w = rewrite_ledger(
          store, *old ? (*old)->get() : -1, std::move(add), [](const std::string&) { return true; },
          new_pending);
      !w) {
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
    const std::string report = item->id + std::string(k_report_suffix);
    if ((::unlinkat(dfd, core.c_str(), 0) != 0 && errno != ENOENT) ||
        (::unlinkat(dfd, report.c_str(), 0) != 0 && errno != ENOENT)) {
      continue; // the record stays, pending: counted once, retried by the next run
    }
    if (::unlinkat(dfd, record.c_str(), 0) == 0 || errno == ENOENT) {
      ++removed;
    }
  }

  // 3. Drop from `pending` every id whose record is gone. Ids left pending by an interrupted
  // earlier run are checked too (a listing, no reads), so the list does not grow forever.
  std::set<std::string> ours_still_there;
  std::set<std::string> todo_ids;
  for (const RetireItem* item : todo) {
    todo_ids.insert(item->id);
    if (record_exists(exe_dir(*item), item->id).value_or(true)) { // unknown: still pending
      ours_still_there.insert(item->id);
    }
  }
  // Our items already pending but not retired now (their record could not be seen) are checked
  // like the other ids of an interrupted run.
  const bool earlier_unknown =
      earlier_others > 0 ||
      std::any_of(earlier_ours.begin(), earlier_ours.end(),
                  [&](const std::string& id) { return !todo_ids.contains(id); });
  std::set<std::string> live; // every record id of the store, when such ids are pending
  bool seen_whole = true;
  if (earlier_unknown) {
    const auto walked = store.for_each_record([&](const StoreEntry& e) { live.insert(e.id); });
    // Part of the store unseen: its records may still be there, and dropping their ids from
    // `pending` would count those crashes twice (in the ledger and live). They stay pending.
    seen_whole = walked && *walked == 0;
  }
  auto now = open_ledger(store);
  if (!now || !*now) {
    return now ? fail("Failed to read ledger " + quoted(store.root() + "/" + k_ledger_name) +
                      ": gone after it was written")
               : Expected<size_t>(std::unexpected(now.error()));
  }
  std::set<std::string> kept; // at most one of each id of a live record
  auto keep = [&](const std::string& id) {
    if (todo_ids.contains(id)) {
      return ours_still_there.contains(id) && kept.insert(id).second;
    }
    if (!seen_whole) {
      return true; // copied as it is, never held
    }
    return live.contains(id) && kept.insert(id).second;
  };
  if (auto w = rewrite_ledger(store, (*now)->get(), {}, keep, {}); !w) {
    // Still consistent: the removed ids stay pending, which only costs space in the ledger.
    return std::unexpected(w.error());
  }
  return removed;
}

} // namespace common
