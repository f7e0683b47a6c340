#include "cli/remote/remote.hpp"

#include "cli/remote/index_line.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/json_bounds.hpp"
#include "common/base/parse.hpp"
#include "common/base/signals.hpp"
#include "common/store/names.hpp"
#include "common/store/record.hpp"
#include "common/store/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace cli {

using nlohmann::json;

// One crash of the catalog: where its objects are. host and exe are checked safe components,
// node the one of the index object the line came from: keys are computed from these, never taken
// from the bucket's text.
struct RemoteBucket::Entry {
  std::string node;
  std::string host;
  std::string exe;
  bool core = false; // the index names a core object
  std::string signature;
  int64_t time = 0;
};

namespace {

// At most this many of one invocation's complaints about the bucket are printed, then a count:
// a hostile bucket must not flood the terminal.
constexpr size_t k_max_warnings = 20;

class Warnings {
public:
  void add(const std::string& where, const std::string& why) {
    if (++m_count <= k_max_warnings) {
      std::fprintf(stderr, "corectl: warning: %s: %s, skipped\n", common::printable(where).c_str(),
                   common::printable(why).c_str());
    }
  }
  ~Warnings() {
    if (m_count > k_max_warnings) {
      std::fprintf(stderr, "corectl: warning: %zu more problem(s) of the bucket skipped\n",
                   m_count - k_max_warnings);
    }
  }

private:
  size_t m_count = 0;
};

std::string join_key(const std::string& prefix, const std::string& rest) {
  return prefix.empty() ? rest : prefix + "/" + rest;
}

// YYYY-MM-DD, the day an index object is named by.
bool is_day(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') {
    return false;
  }
  for (size_t i : {0U, 1U, 2U, 3U, 5U, 6U, 8U, 9U}) {
    if (s[i] < '0' || s[i] > '9') {
      return false;
    }
  }
  return true;
}

std::string day_of(int64_t t) {
  return common::format_time(t).substr(0, 10);
}

// Runs fn(i) for i in [0, n) on up to k_remote_connections threads, each with its own client
// (a curl handle is not shared between threads).
void in_parallel(size_t n, const common::s3::ClientOptions& options,
                 const std::function<void(common::s3::Client&, size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    common::s3::Client client(options);
    for (size_t i = next++; i < n; i = next++) {
      fn(client, i);
    }
  };
  const size_t threads = std::min<size_t>(k_remote_connections, n);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) {
    pool.emplace_back(work);
  }
  if (n > 0) {
    work();
  }
  for (auto& t : pool) {
    t.join();
  }
}

// An object PREFIX/<node>/<name>, as its listing names it.
struct NodeObject {
  std::string key;
  std::string node;
  std::string name;
  uint64_t size = 0;
};

// The objects PREFIX/<node>/<name> whose name `wanted` accepts, at most `max_objects` of the
// listing (a warning says where it stopped). A key outside the prefix, with a slash more, ".."
// or an escape as its node, or a name not wanted, is warned about as `not_ours` and skipped.
// Fails only when the listing does.
common::Expected<std::vector<NodeObject>>
list_node_objects(common::s3::Client& client, const std::string& bucket, const std::string& prefix,
                  size_t max_objects, const std::function<bool(std::string_view)>& wanted,
                  const std::string& not_ours, Warnings& warnings) {
  std::vector<NodeObject> objects;
  size_t listed = 0;
  std::string token;
  do {
    auto page = client.list(prefix, token);
    if (!page) {
      return std::unexpected(page.error());
    }
    for (auto& entry : page->entries) {
      if (++listed > max_objects) {
        warnings.add("s3://" + bucket + "/" + prefix,
                     "more than " + std::to_string(max_objects) + " objects");
        return objects;
      }
      const std::string rest = entry.key.starts_with(prefix) ? entry.key.substr(prefix.size()) : "";
      const size_t slash = rest.find('/');
      std::string node = rest.substr(0, slash);
      std::string name = slash == std::string::npos ? "" : rest.substr(slash + 1);
      if (!entry.key.starts_with(prefix) || !common::is_safe_component(node) || !wanted(name)) {
        warnings.add("s3://" + bucket + "/" + entry.key, not_ours);
        continue;
      }
      objects.push_back({entry.key, std::move(node), std::move(name), entry.size});
    }
    token = page->next_token;
  } while (!token.empty());
  return objects;
}

// An index object: its key and what its name says.
struct IndexObject {
  std::string key;
  std::string node;
  uint64_t size = 0;
  std::string text;  // the body, once fetched
  std::string error; // why it could not be fetched
  common::s3::S3Error s3;
};

// An unlinked 0600 file for a download: $TMPDIR, else /var/tmp (a core can be larger than a
// tmpfs /tmp).
common::Expected<common::UniqueFd> temporary_file() {
  const char* env = std::getenv("TMPDIR");
  const std::string dir = env != nullptr && env[0] == '/' ? env : "/var/tmp";
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    std::string name = dir + "/corectl-core-XXXXXX";
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd >= 0) {
      ::unlink(name.c_str());
    }
  }
  if (fd < 0) {
    return common::fail_errno("Failed to create a temporary file in " + common::quoted(dir), errno);
  }
  return common::UniqueFd(fd);
}

// An ETag that is an MD5 (single PUT) or a multipart ETag: anything else (SSE-KMS, a foreign
// uploader) cannot be recomputed here.
bool is_md5_etag(std::string_view etag) {
  const size_t dash = etag.find('-');
  const std::string_view md5 = etag.substr(0, dash);
  return md5.size() == 32 && common::is_hex(md5) &&
         (dash == std::string_view::npos ||
          common::parse_number<uint64_t>(etag.substr(dash + 1)).has_value());
}

} // namespace

RemoteBucket::RemoteBucket(RemoteAccess access)
    : m_access(std::move(access)), m_client(std::make_unique<common::s3::Client>(m_access.client)) {
}
RemoteBucket::~RemoteBucket() = default;
RemoteBucket::RemoteBucket(RemoteBucket&&) noexcept = default;
RemoteBucket& RemoteBucket::operator=(RemoteBucket&&) noexcept = default;

std::string RemoteBucket::key_of(const Entry& e, const std::string& id, Suffix suffix) const {
  return join_key(m_access.url.prefix, e.node + "/" + e.host + "/" + e.exe + "/" + id) +
         std::string(suffix == Suffix::record ? common::k_record_suffix
                     : suffix == Suffix::core ? common::k_core_suffix
                                              : common::k_report_suffix);
}

std::string RemoteBucket::key(const Located& where, Suffix suffix) const {
  const Entry* e = entry(where);
  if (e == nullptr || (suffix == Suffix::core && !e->core)) {
    return {};
  }
  return key_of(*e, where.id, suffix);
}

const RemoteBucket::Entry* RemoteBucket::entry(const Located& where) const {
  const auto it = m_entries.find(where.id);
  return it == m_entries.end() || it->second.host != where.host_dir ||
                 it->second.exe != where.exe_dir
             ? nullptr
             : &it->second;
}

std::string RemoteBucket::url_of(const Located& where, Suffix suffix) const {
  const std::string k = key(where, suffix);
  return k.empty() ? k : "s3://" + m_access.url.bucket + "/" + k;
}

std::expected<Catalog, Exit> RemoteBucket::load_catalog(const Filter& filter) {
  Warnings warnings;
  const std::string index_prefix = join_key(m_access.url.prefix, ".index/");
  // 1. The index objects, by listing: the listing says their sizes, so a huge one is skipped
  // before it is fetched.
  std::vector<IndexObject> objects;
  const std::string since_day = filter.since ? day_of(*filter.since - 86400) : std::string{};
  const std::string until_day = filter.until ? day_of(*filter.until + 86400) : std::string{};
  // <node>/<day>.jsonl and nothing else.
  auto listed = list_node_objects(
      *m_client, m_access.url.bucket, index_prefix, k_max_index_objects,
      [](std::string_view name) {
        const std::string_view day = name.substr(0, name.size() >= 6 ? name.size() - 6 : 0);
        return name.ends_with(".jsonl") && (is_day(day) || day == "unknown");
      },
      "not an index object", warnings);
  if (!listed) {
    const Exit e = exit_of(m_client->last_error());
    return std::unexpected(report(
        e, "Failed to list " + common::quoted("s3://" + m_access.url.bucket + "/" + index_prefix) +
               ": " + listed.error().message +
               (e == Exit::denied ? " (credentials from " + m_access.credentials_source + ")"
                                  : std::string{})));
  }
  for (NodeObject& o : *listed) {
    const std::string day = o.name.substr(0, o.name.size() - 6);
    if (is_day(day) &&
        ((!since_day.empty() && day < since_day) || (!until_day.empty() && day > until_day))) {
      continue; // a day the filter cannot select
    }
    if (o.size > k_max_index_bytes) {
      warnings.add("s3://" + m_access.url.bucket + "/" + o.key,
                   "an index object larger than " + std::to_string(k_max_index_bytes) + " bytes");
      continue;
    }
    objects.push_back({std::move(o.key), std::move(o.node), o.size, {}, {}, {}});
  }

  // Within the budget of all index bytes, the newest days first: a bucket can hold more history
  // than one listing should read (--since reads less).
  std::stable_sort(objects.begin(), objects.end(), [](const IndexObject& a, const IndexObject& b) {
    return a.key.substr(a.key.rfind('/')) > b.key.substr(b.key.rfind('/'));
  });
  uint64_t total = 0;
  for (size_t i = 0; i < objects.size(); ++i) {
    total += objects[i].size;
    if (total > k_max_index_total) {
      warnings.add("s3://" + m_access.url.bucket + "/" + index_prefix,
                   "the index objects before " +
                       objects[i].key.substr(objects[i].key.rfind('/') + 1) + " are beyond the " +
                       std::to_string(k_max_index_total >> 20) +
                       " MiB read at once (narrow with --since)");
      objects.resize(i);
      break;
    }
  }

  // 2. Their bodies, a few at a time, each bounded by the size its listing said.
  in_parallel(objects.size(), m_access.client, [&](common::s3::Client& client, size_t i) {
    auto body = client.get(objects[i].key, static_cast<size_t>(objects[i].size));
    if (body) {
      objects[i].text = std::move(*body);
    } else {
      objects[i].error = body.error().message;
      objects[i].s3 = client.last_error();
    }
  });
  size_t failed = 0;
  for (const auto& o : objects) {
    failed += o.error.empty() ? 0U : 1U;
  }
  if (failed > 0 && failed == objects.size()) {
    // Not one could be read: the credentials may list but not get, or the server is gone.
    return std::unexpected(report(exit_of(objects.front().s3), objects.front().error));
  }

  // 3. Their lines, checked; a line of the first format leaves its summary to the record.
  Catalog cat;
  m_entries.clear();
  m_everything = !filter.since && !filter.until;
  std::vector<IndexLine> pending;
  std::vector<std::string> pending_nodes;
  std::vector<uint64_t> ids;
  auto add = [&](Crash&& c, bool core, const std::string& node, const std::string& where) {
    if (!common::is_safe_component(node)) {
      return;
    }
    auto [it, inserted] =
        m_entries.try_emplace(c.id, Entry{node, c.host_dir, c.exe_dir, core, c.signature, c.time});
    if (!inserted) {
      if (it->second.node != node || it->second.host != c.host_dir || it->second.exe != c.exe_dir) {
        warnings.add(where,
                     "the crash " + c.id + " is also in node " + it->second.node + "'s index");
      }
      return;
    }
    add_id(ids, c.id);
    if (filter.matches(c)) {
      cat.crashes.push_back(std::move(c));
    }
  };
  for (const auto& o : objects) {
    const std::string where = "s3://" + m_access.url.bucket + "/" + o.key;
    if (!o.error.empty()) {
      warnings.add(where, o.error);
      continue;
    }
    size_t number = 0;
    for (size_t start = 0; start < o.text.size();) {
      size_t end = o.text.find('\n', start);
      end = end == std::string::npos ? o.text.size() : end;
      const std::string_view text(o.text.data() + start, end - start);
      start = end + 1;
      ++number;
      if (text.empty()) {
        continue;
      }
      auto line = read_index_line(text, o.node, m_access.url.prefix);
      if (!line) {
        warnings.add(where + " line " + std::to_string(number), line.error());
        continue;
      }
      if (line->summary) {
        add(std::move(line->crash), line->core, o.node, where);
      } else if (pending.size() < k_max_summary_fetches) {
        pending.push_back(std::move(*line));
        pending_nodes.push_back(o.node);
      } else {
        warnings.add(where, "more than " + std::to_string(k_max_summary_fetches) +
                                " crashes in the index's first format, whose records are read");
      }
    }
  }
  // Lines of uploaders before the summary fields: the record says the rest (bounded GETs).
  std::vector<std::expected<Crash, std::string>> summaries(pending.size(),
                                                           std::unexpected(std::string{}));
  in_parallel(pending.size(), m_access.client, [&](common::s3::Client& client, size_t i) {
    const Crash& c = pending[i].crash;
    const Entry e{pending_nodes[i], c.host_dir, c.exe_dir, false, {}, 0};
    auto text = client.get(key_of(e, c.id, Suffix::record), common::k_max_record_bytes);
    if (!text) {
      summaries[i] = std::unexpected(text.error().message);
      return;
    }
    auto s = summarise(*text);
    if (!s) {
      summaries[i] = std::unexpected("a malformed record: " + s.error().message);
    } else if (s->id != c.id) {
      summaries[i] = std::unexpected("a record that names another id (" + s->id + ")");
    } else {
      summaries[i] = std::move(*s);
    }
  });
  for (size_t i = 0; i < pending.size(); ++i) {
    const std::string& node = pending_nodes[i];
    const Crash& line = pending[i].crash;
    const std::string where =
        "s3://" + m_access.url.bucket + "/" +
        key_of(Entry{node, line.host_dir, line.exe_dir, false, {}, 0}, line.id, Suffix::record);
    if (!summaries[i]) {
      warnings.add(where, summaries[i].error());
      continue;
    }
    Crash c = std::move(*summaries[i]);
    c.host_dir = line.host_dir;
    c.exe_dir = line.exe_dir;
    c.core_file = pending[i].core;
    add(std::move(c), pending[i].core, node, where);
  }
  std::sort(cat.crashes.begin(), cat.crashes.end(), [](const Crash& a, const Crash& b) {
    return a.time != b.time ? a.time < b.time : a.id < b.id;
  });
  cat.id_abbrev = abbrev_length(ids);
  return cat;
}

RemoteBucket::GroupFiles RemoteBucket::load_group_files() {
  Warnings warnings;
  const std::string prefix = join_key(m_access.url.prefix, std::string(common::k_groups_dir) + "/");
  struct Object {
    std::string key;
    bool marks = false;
    std::optional<common::Marks> parsed_marks;
    std::optional<common::Seen> parsed_seen;
    std::string error;
  };
  std::vector<Object> objects;
  // <node>/resolved.json or <node>/seen.json and nothing else.
  auto listed = list_node_objects(
      *m_client, m_access.url.bucket, prefix, 2 * k_max_group_nodes,
      [](std::string_view name) {
        return name == common::k_marks_name || name == common::k_seen_name;
      },
      "not a node's group file", warnings);
  if (!listed) {
    // The states then come from the records alone, as for a store without group files.
    warnings.add("s3://" + m_access.url.bucket + "/" + prefix,
                 "group files not listed: " + listed.error().message);
  }
  uint64_t total = 0;
  std::vector<NodeObject> none;
  for (NodeObject& o : listed ? *listed : none) {
    if (o.size > common::k_groups_file_limit || (total += o.size) > k_max_group_total) {
      warnings.add("s3://" + m_access.url.bucket + "/" + o.key,
                   "beyond the " + std::to_string(k_max_group_total >> 20) +
                       " MiB of group files read at once, or larger than " +
                       std::to_string(common::k_groups_file_limit) + " bytes");
      continue;
    }
    objects.push_back({std::move(o.key), o.name == common::k_marks_name, {}, {}, {}});
  }

  // Each GET'd and checked as a store's file is (the same parsers and bounds).
  in_parallel(objects.size(), m_access.client, [&](common::s3::Client& client, size_t i) {
    Object& o = objects[i];
    auto body = client.get(o.key, common::k_groups_file_limit);
    if (!body) {
      o.error = body.error().message;
    } else if (o.marks) {
      if (auto m = common::parse_marks(*body)) {
        o.parsed_marks = std::move(*m);
      } else {
        o.error = m.error().message;
      }
    } else if (auto s = common::parse_seen(*body)) {
      o.parsed_seen = std::move(*s);
    } else {
      o.error = s.error().message;
    }
  });
  GroupFiles files;
  for (const Object& o : objects) {
    if (!o.error.empty()) {
      warnings.add("s3://" + m_access.url.bucket + "/" + o.key, o.error);
    } else if (o.parsed_marks) {
      common::merge_marks(files.marks, *o.parsed_marks);
    } else if (o.parsed_seen) {
      common::merge_seen_groups(files.seen, *o.parsed_seen);
    }
  }
  return files;
}

std::expected<void, Exit> RemoteBucket::load_ids() {
  if (m_everything) {
    return {};
  }
  auto cat = load_catalog(Filter{});
  if (!cat) {
    return std::unexpected(cat.error());
  }
  return {};
}

std::expected<Located, LookupFailure> RemoteBucket::resolve_id(std::string_view prefix) {
  auto checked = id_prefix(prefix);
  if (!checked) {
    return std::unexpected(checked.error());
  }
  const std::string& want = *checked;
  if (!m_everything) {
    auto cat = load_catalog(Filter{});
    if (!cat) {
      return std::unexpected(
          LookupFailure{LookupError::not_found, "The bucket could not be read", {}});
    }
  }
  std::vector<Located> found;
  for (auto it = m_entries.lower_bound(want); it != m_entries.end() && it->first.starts_with(want);
       ++it) {
    found.push_back({it->second.host, it->second.exe, it->first});
  }
  if (found.empty()) {
    return std::unexpected(
        LookupFailure{LookupError::not_found,
                      "No record " + std::string(prefix) + " in " +
                          common::quoted("s3://" + m_access.url.bucket + "/" + m_access.url.prefix),
                      {}});
  }
  if (found.size() > 1) {
    return std::unexpected(LookupFailure{
        LookupError::ambiguous, "Id prefix " + std::string(prefix) + " is ambiguous", found});
  }
  return found.front();
}

common::Expected<FullRecord> RemoteBucket::read_record(const Located& where) const {
  const std::string url = url_of(where, Suffix::record);
  if (url.empty()) {
    return common::fail("No record " + where.id + " in the bucket's index");
  }
  auto text = m_client->get(key(where, Suffix::record), common::k_max_record_bytes);
  if (!text) {
    return common::fail("Failed to read record " + common::quoted(url) + ": " +
                        text.error().message);
  }
  return parse_full_record(*text, where, url);
}

Catalog RemoteBucket::group(const std::string& signature) const {
  Catalog cat;
  for (const auto& [id, e] : m_entries) {
    if (!signature.empty() && e.signature == signature) {
      Crash c;
      c.host_dir = e.host;
      c.exe_dir = e.exe;
      c.id = id;
      c.time = e.time;
      c.signature = e.signature;
      cat.crashes.push_back(std::move(c));
    }
  }
  return cat;
}

common::Expected<std::string> RemoteBucket::read_report(const Located& where,
                                                        size_t max_bytes) const {
  const std::string k = key(where, Suffix::report);
  if (k.empty()) {
    return common::fail_errno("No record " + where.id + " in the bucket's index", ENOENT);
  }
  return m_client->get(k, max_bytes);
}

bool RemoteBucket::core_uploaded(const Located& where) const {
  const std::string k = key(where, Suffix::core);
  return !k.empty() && m_client->head(k).has_value();
}

std::expected<common::UniqueFd, Exit>
RemoteBucket::download_core(const Located& where, const common::Record& record, bool quiet) const {
  const std::string url = url_of(where, Suffix::core);
  if (url.empty()) {
    return std::unexpected(report(Exit::failure, "The bucket's index names no core for " +
                                                     where.id + " (the record is there)"));
  }
  const std::string k = key(where, Suffix::core);
  auto info = m_client->head(k);
  if (!info) {
    if (info.error().sys_errno == ENOENT) {
      return std::unexpected(
          report(Exit::failure,
                 "The core of " + where.id + " is not in the bucket (" + common::quoted(url) +
                     "): its uploader's upload_cores policy skipped it, or it is not "
                     "uploaded yet"));
    }
    return std::unexpected(report(exit_of(m_client->last_error()), info.error().message));
  }
  // The record says how large the stored core was: a bucket object of another size is not it
  // (and a huge object is never downloaded).
  if (record.core.stored_size > 0 && info->size != record.core.stored_size) {
    return std::unexpected(report(
        Exit::failure, "The core " + common::quoted(url) + " is " + std::to_string(info->size) +
                           " bytes, its record says " + std::to_string(record.core.stored_size)));
  }
  auto fd = temporary_file();
  if (!fd) {
    return std::unexpected(report(Exit::failure, fd.error().message));
  }
  if (!quiet) {
    std::fprintf(stderr, "corectl: downloading %s (%llu bytes)\n", common::printable(url).c_str(),
                 static_cast<unsigned long long>(info->size));
  }
  auto got = m_client->get_to_fd(k, fd->get(), info->size);
  if (!got) {
    return std::unexpected(
        report(exit_of(m_client->last_error()),
               "Failed to download " + common::quoted(url) + ": " + got.error().message));
  }
  if (*got != info->size) {
    return std::unexpected(report(Exit::failure, "Downloaded " + std::to_string(*got) +
                                                     " bytes of " + common::quoted(url) + ", not " +
                                                     std::to_string(info->size)));
  }
  if (is_md5_etag(info->etag)) {
    auto etags = common::s3::file_etags(fd->get(), info->size);
    if (!etags) {
      return std::unexpected(report(Exit::failure, etags.error().message));
    }
    if (!etags->matches(info->etag)) {
      return std::unexpected(report(
          Exit::failure, "The core downloaded from " + common::quoted(url) + " has the ETag " +
                             etags->upload + ", the bucket says " + common::printable(info->etag)));
    }
  } else if (!quiet) {
    std::fprintf(stderr,
                 "corectl: note: the ETag of %s is not an MD5; only its size and zstd's "
                 "checksum are checked\n",
                 common::printable(url).c_str());
  }
  if (::lseek(fd->get(), 0, SEEK_SET) != 0) {
    return std::unexpected(report(Exit::failure, std::string("Failed to rewind the download: ") +
                                                     std::strerror(errno)));
  }
  return std::move(*fd);
}

} // namespace cli
