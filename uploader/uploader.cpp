#include "uploader/uploader.hpp"

#include "common/base/atomic_file.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/sha256.hpp"
#include "common/packages/group_state.hpp"
#include "common/store/names.hpp"
#include "common/store/record.hpp"
#include "common/store/record_summary_view.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <map>
#include <set>

namespace uploader {

namespace {

// An index object (one per node and day) holds a line per crash; past this many lines a day's
// index is not grown further (the objects themselves are still uploaded and listable).
constexpr size_t k_max_index_lines = 100000;
// Signature markers looked at per decision: first:N never needs more than N of them.
constexpr uint64_t k_max_first = 1000;
// The longest the service sleeps between sweeps when nothing happens (a missed inotify event,
// a state edited by hand, a retry computed on another clock).
constexpr int k_max_idle_ms = 60 * 1000;
// Events arriving in a burst (a crash storm) are handled by one sweep.
constexpr int k_debounce_ms = 200;

int64_t now() {
  return static_cast<int64_t>(time(nullptr));
}

// One of the state directory's own small JSON objects (counters, what was sent); missing,
// unreadable or not an object reads as empty.
nlohmann::json read_small_object(int dirfd, const std::string& name) {
  if (auto text = common::read_file(dirfd, name, 64 << 10)) {
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_object()) {
      return j;
    }
  }
  return nlohmann::json::object();
}

std::string join_key(const std::string& prefix, const std::string& rest) {
  return prefix.empty() ? rest : prefix + "/" + rest;
}

// Signatures are 16 hex characters; anything else from the record is not used in a key.
bool is_signature(std::string_view s) {
  return s.size() == 16 && common::is_hex(s);
}

// A string field of a record's free-form section, or "" when absent or of another type (the
// store's owner wrote the record: a wrong type must cost the field, not the upload).
std::string string_field(const nlohmann::json& section, const char* name) {
  if (!section.is_object()) {
    return {};
  }
  const auto it = section.find(name);
  return it != section.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

} // namespace

std::optional<CorePolicy> parse_core_policy(std::string_view text) {
  if (text == "always") {
    return CorePolicy{CorePolicy::Kind::always, 0};
  }
  if (text == "never") {
    return CorePolicy{CorePolicy::Kind::never, 0};
  }
  if (text.starts_with("first:")) {
    const auto n = common::parse_number<uint64_t>(text.substr(6));
    if (n && *n >= 1 && *n <= k_max_first) {
      return CorePolicy{CorePolicy::Kind::first, *n};
    }
  }
  return std::nullopt;
}

std::string machine_node_name() {
  struct utsname u {};
  uname(&u);
  return common::host_component(u.nodename);
}

common::Expected<Settings> settings_from_config(const common::Config& c) {
  if (c.upload_url.empty()) {
    return common::fail("upload_url is empty: nothing to upload to");
  }
  auto url = common::s3::parse_bucket_url(c.upload_url);
  if (!url) {
    return common::fail("upload_url: " + url.error().message);
  }
  Settings s;
  s.store = c.store;
  s.url = *url;
  s.client.bucket = url->bucket;
  s.client.endpoint = c.upload_endpoint;
  if (!s.client.endpoint.empty() && !s.client.endpoint.starts_with("https://") &&
      !s.client.endpoint.starts_with("http://")) {
    return common::fail("upload_endpoint must start with https:// (or http://): " +
                        common::quoted(c.upload_endpoint));
  }
  s.client.region = c.upload_region;
  if (c.upload_addressing == "path") {
    s.client.addressing = common::s3::Addressing::path;
  } else if (c.upload_addressing == "virtual") {
    s.client.addressing = common::s3::Addressing::virtual_host;
  } else {
    return common::fail("upload_addressing must be path or virtual: " +
                        common::quoted(c.upload_addressing));
  }
  s.client.ca_file = c.upload_ca_file;
  s.client.proxy = c.upload_proxy;
  s.client.max_send_bytes_per_second = c.upload_max_rate;
  s.client.parts_in_flight = static_cast<unsigned>(c.upload_connections);
  auto policy = parse_core_policy(c.upload_cores);
  if (!policy) {
    return common::fail("upload_cores must be always, never or first:N (1 to 1000): " +
                        common::quoted(c.upload_cores));
  }
  s.cores = *policy;
  s.privileged_cores = c.upload_privileged_cores;
  s.node = c.upload_node.empty() ? machine_node_name() : common::host_component(c.upload_node);
  s.state_dir = c.upload_state_dir;
  auto creds = c.upload_credentials.empty()
                   ? common::s3::credentials_from_environment()
                   : common::s3::load_credentials_file(c.upload_credentials, "default");
  if (!creds) {
    return std::unexpected(creds.error());
  }
  s.client.credentials = *creds;
  return s;
}

common::Expected<Uploader> Uploader::create(Settings settings) {
  auto store = common::Store::open(settings.store);
  if (!store) {
    return std::unexpected(store.error());
  }
  auto state = StateDir::open(settings.state_dir);
  if (!state) {
    return std::unexpected(state.error());
  }
  common::s3::Client client(settings.client);
  return Uploader(std::move(settings), std::move(*store), std::move(*state), std::move(client));
}

std::string Uploader::key_base(const common::StoreEntry& e) const {
  // host and exe are the store's safe components (the walk lists only those), and the node is
  // ours: no record's content ever becomes part of a key.
  return join_key(m_settings.url.prefix, m_settings.node + "/" + e.host + "/" + e.exe + "/" + e.id);
}

void Uploader::count(std::string_view kind, std::string_view result) {
  // Counters live in the state directory, read by the exporter (upload_metrics); never lower.
  const std::string name = ".counters.json";
  nlohmann::json j = read_small_object(m_state.fd(), name);
  const std::string k = std::string(kind) + "/" + std::string(result);
  j[k] = j.value(k, uint64_t{0}) + 1;
  if (auto w = common::write_file_atomic(m_state.fd(), name, j.dump() + "\n", 0640,
                                         common::Replace::yes);
      !w) {
    spdlog::warn("Failed to update the upload counters: {}", w.error().message);
  }
}

common::Expected<bool> Uploader::core_wanted(const std::string& signature) {
  switch (m_settings.cores.kind) {
  case CorePolicy::Kind::always:
    return true;
  case CorePolicy::Kind::never:
    return false;
  case CorePolicy::Kind::first:
    break;
  }
  if (!is_signature(signature)) {
    return true; // no signature to count by: the core is the only evidence
  }
  // Marker objects, one per uploaded core: hosts deciding at the same moment may each see
  // fewer than N and together upload a few more (documented with the key).
  auto page = m_client.list(join_key(m_settings.url.prefix, ".signatures/" + signature + "/"), {},
                            static_cast<unsigned>(m_settings.cores.first));
  if (!page) {
    return std::unexpected(page.error());
  }
  return page->entries.size() < m_settings.cores.first;
}

common::Expected<void> Uploader::add_to_index(const std::string& day, const std::string& line,
                                              const std::string& id) {
  // The node's own index of the day, kept locally and uploaded whole: this node alone writes
  // it (PREFIX/.index/<node>/<day>.jsonl), so there is no race with other hosts.
  const std::string dir = ".index";
  if (mkdirat(m_state.fd(), dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return common::fail_errno("Failed to create the index directory", errno);
  }
  auto dirfd = common::open_at(m_state.fd(), dir, O_RDONLY | O_DIRECTORY);
  if (!dirfd) {
    return std::unexpected(dirfd.error());
  }
  const std::string name = day + ".jsonl";
  std::string text;
  if (auto fd = common::open_at(dirfd->get(), name, O_RDONLY)) {
    auto t = common::read_fd(fd->get(), "the index " + name, 256ULL << 20);
    if (!t) {
      return std::unexpected(t.error());
    }
    text = std::move(*t);
  }
  if (text.find("\"id\":\"" + id + "\"") == std::string::npos) {
    if (static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) >= k_max_index_lines) {
      return {};
    }
    text += line + "\n";
    if (auto w = common::write_file_atomic(dirfd->get(), name, text, 0640, common::Replace::yes);
        !w) {
      return w;
    }
  }
  auto put = m_client.put(
      join_key(m_settings.url.prefix, ".index/" + m_settings.node + "/" + day + ".jsonl"),
      std::as_bytes(std::span(text)), {}, "application/x-ndjson");
  if (!put) {
    return std::unexpected(put.error());
  }
  return {};
}

common::Expected<bool> Uploader::upload_report(const common::StoreEntry& e, const std::string& base,
                                               const std::map<std::string, std::string>& meta) {
  // What the store holds is the store owner's to plant: a link, a FIFO or something larger than
  // the handler ever writes is not sent, and costs the report only. The record goes up without
  // it (and says where the report was), so a bad file here never holds a crash back. Only a
  // failed upload is retried.
  auto f = common::open_regular(e.exe_dirfd, e.id + std::string(common::k_report_suffix));
  if (!f) {
    if (f.error().sys_errno != ENOENT) {
      spdlog::warn("Not uploading the runtime's report of {}: {}", e.id,
                   common::printable(f.error().message));
      count("report", "failed");
    }
    return false;
  }
  if (f->size > common::k_max_report_bytes) {
    spdlog::warn("Not uploading the runtime's report of {}: {} bytes, larger than the {} the "
                 "handler keeps",
                 e.id, f->size, common::k_max_report_bytes);
    count("report", "failed");
    return false;
  }
  auto up =
      m_client.upload_file(base + std::string(common::k_report_suffix), f->fd.get(), f->size, meta);
  if (!up) {
    count("report", "failed");
    return std::unexpected(up.error());
  }
  count("report", "ok");
  return true;
}

common::Expected<void> Uploader::upload_crash(const common::StoreEntry& e, CrashState& st,
                                              SweepResult& result) {
  auto rfd = common::open_regular(e.exe_dirfd, e.id + std::string(common::k_record_suffix));
  if (!rfd) {
    return common::fail("Failed to open the record: " + rfd.error().message);
  }
  auto text = common::read_fd(rfd->fd.get(), "the record", common::k_max_record_bytes);
  if (!text) {
    return std::unexpected(text.error());
  }
  auto record = common::parse_record(*text);
  if (!record) {
    return common::fail("Unreadable record: " + record.error().message);
  }
  const std::string base = key_base(e);
  const std::string record_key = base + std::string(common::k_record_suffix);
  const std::string core_key = base + std::string(common::k_core_suffix);
  const std::string signature = string_field(record->crash, "signature");
  const std::string build_id = string_field(record->crash, "build_id");
  const std::map<std::string, std::string> meta = {
      {"host", common::printable(record->hostname)},
      {"executable", common::printable(record->executable)},
      {"signal", record->signal_name},
      {"signature", is_signature(signature) ? signature : ""},
      {"build-id", common::is_hex(build_id) ? build_id : ""},
      {"time", record->time},
      {"id", e.id}};

  // Retention removed the core before it went up: the bucket's copy of the record still says the
  // core is there, so the record is sent again (it now says core.removed_before_upload).
  if (st.record_done && st.core == CoreState::pending && record->core.removed) {
    st.record_done = false;
  }
  // A finished record may have vanished from the server (a bucket emptied, a new cluster): the
  // core's retry checks it first.
  if (st.record_done && st.core == CoreState::pending) {
    auto head = m_client.head(record_key);
    if (!head && head.error().sys_errno == ENOENT) {
      st.record_done = false;
      st.indexed = false;
    } else if (!head) {
      return std::unexpected(head.error());
    }
  }
  const bool privileged = record->core.access == common::CoreAccess::root_only;
  if (!st.record_done) {
    // The runtime's own report first, so that a record seen in the bucket has it: small text,
    // as private as the core (its ACLs are the core's), so the same privilege rule applies but
    // not upload_cores, which is about the cores' volume.
    if (record->runtime_report.is_object() && record->runtime_report.contains("stored") &&
        (!privileged || m_settings.privileged_cores)) {
      if (auto sent = upload_report(e, base, meta); !sent) {
        return std::unexpected(sent.error());
      }
    }
    auto up = m_client.upload_file(record_key, rfd->fd.get(), text->size(), meta);
    if (!up) {
      count("record", "failed");
      return std::unexpected(up.error());
    }
    count("record", "ok");
    st.record_done = true;
    ++result.uploaded_records;
    (void)m_state.save(st);
  }
  if (!st.indexed) {
    nlohmann::json line = {{"id", e.id},
                           {"time", record->time},
                           {"node", m_settings.node},
                           {"host", e.host},
                           {"exe", e.exe},
                           {"hostname", common::to_valid_utf8(record->hostname)},
                           {"executable", common::to_valid_utf8(record->executable)},
                           {"signal", record->signal_name},
                           {"signature", is_signature(signature) ? signature : ""},
                           {"record", record_key},
                           {"core", record->core.present && !record->core.removed ? core_key : ""},
                           {"core_size", record->core.stored_size}};
    // What a list view shows besides, so that `corectl --remote list` needs no record: the
    // fields of the summary the local catalog reads (common/store/record_summary_view), added
    // after the first format's keys. A reader finds them all or none (then it GETs the record).
    if (auto view = common::read_record_view(*text)) {
      line["signo"] = view->signal;
      line["pid"] = view->pid ? nlohmann::json(*view->pid) : nlohmann::json(nullptr);
      line["uid"] = view->uid ? nlohmann::json(*view->uid) : nlohmann::json(nullptr);
      line["comm"] = common::to_valid_utf8(view->comm);
      line["executable_deleted"] = view->executable_deleted;
      line["core_present"] = view->core.present;
      line["core_dump_size"] = view->core.size; // the core's own size (core_size: as stored)
      line["core_reason"] = common::to_valid_utf8(view->core.reason);
      line["core_removed"] = view->core.removed;
      line["site"] = common::to_valid_utf8(view->site);
    }
    const std::string day = record->time.size() >= 10 ? record->time.substr(0, 10) : "unknown";
    if (auto ix = add_to_index(common::is_safe_component(day) ? day : "unknown", line.dump(), e.id);
        !ix) {
      return common::fail("Failed to update the index: " + ix.error().message);
    }
    st.indexed = true;
    (void)m_state.save(st);
  }
  if (st.core != CoreState::pending) {
    return {};
  }
  if (!record->core.present || record->core.removed) {
    st.core = CoreState::none;
    return {};
  }
  if (privileged && !m_settings.privileged_cores) {
    st.core = CoreState::skipped;
    return {};
  }
  auto wanted = core_wanted(signature);
  if (!wanted) {
    return std::unexpected(wanted.error());
  }
  if (!*wanted) {
    st.core = CoreState::skipped;
    return {};
  }
  auto cfd = common::open_regular(e.exe_dirfd, e.id + std::string(common::k_core_suffix));
  if (!cfd) {
    if (cfd.error().sys_errno == ENOENT) {
      st.core = CoreState::none; // removed since the record was written; the record went up
      return {};
    }
    return common::fail("Failed to open the core: " + cfd.error().message);
  }
  auto up = m_client.upload_file(core_key, cfd->fd.get(), cfd->size, meta);
  if (!up) {
    count("core", "failed");
    return std::unexpected(up.error());
  }
  count("core", "ok");
  ++result.uploaded_cores;
  st.core = CoreState::done;
  if (m_settings.cores.kind == CorePolicy::Kind::first && is_signature(signature)) {
    const std::string marker = join_key(m_settings.url.prefix, ".signatures/" + signature + "/" +
                                                                   m_settings.node + "-" + e.id);
    if (auto m = m_client.put(marker, {}, {}); !m) {
      spdlog::warn("Failed to write the signature marker for {}: {}", e.id, m.error().message);
    }
  }
  return {};
}

void Uploader::upload_group_files() {
  // The store's group files (resolve marks, the exporter's seen-set) as this node's
  // PREFIX/.groups/<node>/<name>: read as untrusted (the store's owner writes them), uploaded in
  // their checked form, and only when that changed since the last upload (.groups.json here).
  const std::string state_name = ".groups.json";
  nlohmann::json sent = read_small_object(m_state.fd(), state_name);
  // The checked form: nullopt when the file was never written.
  auto text_of = [](auto read, auto to_text) -> common::Expected<std::optional<std::string>> {
    if (!read) {
      return std::unexpected(read.error());
    }
    if (!*read) {
      return std::nullopt;
    }
    return to_text(**read);
  };
  const std::pair<const char*, common::Expected<std::optional<std::string>>> files[] = {
      {common::k_marks_name, text_of(common::read_marks(m_store.fd()), common::marks_to_text)},
      {common::k_seen_name, text_of(common::read_seen(m_store.fd()), common::seen_to_text)},
  };
  bool changed = false;
  for (const auto& [name, text] : files) {
    if (!text) {
      spdlog::warn("Not uploading the store's {}: {}", name, text.error().message);
      continue;
    }
    if (!*text) {
      continue; // never written: nothing to say
    }
    const std::string digest = common::sha256_hex(**text);
    if (sent.value(name, std::string{}) == digest) {
      continue;
    }
    auto put = m_client.put(join_key(m_settings.url.prefix, std::string(common::k_groups_dir) +
                                                                "/" + m_settings.node + "/" + name),
                            std::as_bytes(std::span(**text)), {}, "application/json");
    if (!put) {
      count("groups", "failed");
      spdlog::error("Failed to upload the store's {}: {}", name, put.error().message);
      continue;
    }
    count("groups", "ok");
    sent[name] = digest;
    changed = true;
  }
  if (changed) {
    if (auto w = common::write_file_atomic(m_state.fd(), state_name, sent.dump() + "\n", 0640,
                                           common::Replace::yes);
        !w) {
      spdlog::warn("Failed to save what was uploaded of the group files: {}", w.error().message);
    }
  }
}

SweepResult Uploader::sweep(Due due) {
  SweepResult result;
  m_next_due = 0;
  const int64_t t = now();
  int64_t oldest_pending = 0;
  auto note_pending = [&](const CrashState& st) {
    oldest_pending = oldest_pending == 0 ? st.first_seen : std::min(oldest_pending, st.first_seen);
  };
  auto walked = m_store.for_each_record([&](const common::StoreEntry& e) {
    CrashState st = m_state.load(e.id, t);
    if (st.finished()) {
      return;
    }
    if (due == Due::respect && st.next_try > t) {
      ++result.pending;
      note_pending(st);
      m_next_due = m_next_due == 0 ? st.next_try : std::min(m_next_due, st.next_try);
      return;
    }
    // Every attempt counts, the successful one too: a crash uploaded on the second try says 2.
    ++st.attempts;
    auto done = upload_crash(e, st, result);
    if (done) {
      st.last_error.clear();
      st.next_try = 0;
      st.done_time = now();
      spdlog::info("Uploaded crash {} of {}/{}", e.id, e.host, e.exe);
    } else {
      st.last_error = done.error().message;
      st.next_try = now() + backoff_seconds(st.attempts);
      ++result.failed;
      ++result.pending;
      note_pending(st);
      m_next_due = m_next_due == 0 ? st.next_try : std::min(m_next_due, st.next_try);
      spdlog::error("Failed to upload crash {} (attempt {}), retrying in {} s: {}", e.id,
                    st.attempts, st.next_try - now(), common::printable(st.last_error));
    }
    if (auto s = m_state.save(st); !s) {
      spdlog::error("Failed to save the upload state of {}: {}", e.id, s.error().message);
    }
  });
  if (!walked) {
    spdlog::error("Failed to walk the store: {}", walked.error().message);
  }
  upload_group_files();
  // The backlog for the exporter (exporter/upload_metrics): what is pending and since when.
  const nlohmann::json status = {
      {"backlog", result.pending}, {"oldest_pending", oldest_pending}, {"last_sweep", now()}};
  if (auto w = common::write_file_atomic(m_state.fd(), ".status.json", status.dump() + "\n", 0640,
                                         common::Replace::yes);
      !w) {
    spdlog::warn("Failed to write the upload status: {}", w.error().message);
  }
  return result;
}

common::Expected<void> Uploader::serve() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  const int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (sfd < 0 || ifd < 0) {
    return common::fail_errno("Failed to set up signalfd/inotify", errno);
  }
  std::set<std::string> watched;
  auto watch = [&](const std::string& rel) {
    if (watched.insert(rel).second) {
      const std::string path = m_settings.store + (rel.empty() ? "" : "/" + rel);
      // Directories appear (IN_CREATE) and records are linked in (IN_CREATE, IN_MOVED_TO).
      // The group files are replaced by a rename into `.groups/` (IN_MOVED_TO), which
      // appears when first written: until then it is tried again each sweep.
      if (inotify_add_watch(ifd, path.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
        if (errno == ENOENT) {
          watched.erase(rel);
        } else {
          spdlog::warn("Failed to watch '{}': {}", common::printable(path), strerror(errno));
        }
      }
    }
  };
  auto watch_all = [&] {
    watch("");
    watch(common::k_groups_dir);
    (void)m_store.walk({}, {}, [&](std::string_view host, std::string_view exe, int) {
      watch(std::string(host));
      watch(std::string(host) + "/" + std::string(exe));
    });
  };
  for (;;) {
    watch_all();
    const SweepResult r = sweep(Due::respect);
    if (r.uploaded_records + r.uploaded_cores + r.failed > 0) {
      spdlog::info("Sweep: {} records and {} cores uploaded, {} failed, {} pending",
                   r.uploaded_records, r.uploaded_cores, r.failed, r.pending);
    }
    int timeout = k_max_idle_ms;
    if (m_next_due > 0) {
      timeout =
          static_cast<int>(std::clamp<int64_t>((m_next_due - now()) * 1000, 0, k_max_idle_ms));
    }
    pollfd fds[2] = {{sfd, POLLIN, 0}, {ifd, POLLIN, 0}};
    if (poll(fds, 2, timeout) < 0 && errno != EINTR) {
      return common::fail_errno("poll failed", errno);
    }
    if (fds[0].revents & POLLIN) {
      spdlog::info("Stopping");
      return {};
    }
    if (fds[1].revents & POLLIN) {
      poll(nullptr, 0, k_debounce_ms);
      char buf[64 << 10];
      while (read(ifd, buf, sizeof buf) > 0) {
        // Drained: the sweep that follows looks at everything anyway.
      }
    }
  }
}

} // namespace uploader
