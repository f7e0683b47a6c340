// process-core-uploader's work: a sweep of the store that sends each crash's record, then its
// core by policy, to S3, keeping per-crash state (state.hpp) so that nothing is lost and nothing
// is sent twice; and the service loop (a sweep at start, then inotify and retries when due).
#pragma once

#include "common/base/error.hpp"
#include "common/config/config.hpp"
#include "common/s3/client.hpp"
#include "common/store/store.hpp"
#include "uploader/state.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace uploader {

// upload_cores: always, never, or the first N of each signature fleet-wide.
struct CorePolicy {
  enum class Kind { always, never, first } kind = Kind::always;
  uint64_t first = 0;
};
std::optional<CorePolicy> parse_core_policy(std::string_view text);

// What one run was asked (from the configuration), checked once at start.
struct Settings {
  std::string store;
  common::s3::BucketUrl url;
  common::s3::ClientOptions client;
  CorePolicy cores;
  bool privileged_cores = false;
  std::string node;
  std::string state_dir;
};
// The settings from the configuration, with the credentials read; an error says which key is
// wrong (or that upload_url is empty: nothing to do).
common::Expected<Settings> settings_from_config(const common::Config& config);

// This machine's own name as a safe key component (uname in the uploader's namespaces).
std::string machine_node_name();

// Counts of one sweep.
struct SweepResult {
  uint64_t uploaded_records = 0;
  uint64_t uploaded_cores = 0;
  uint64_t failed = 0;
  uint64_t pending = 0; // not finished after the sweep (failed, or not yet due)
};

enum class Due { respect, ignore }; // --once tries everything pending, whatever its next try

class Uploader {
public:
  static common::Expected<Uploader> create(Settings settings);
  // One pass over the store: every crash not finished whose next try is due.
  SweepResult sweep(Due due);
  // The service: sweep, then watch the store (inotify) and retry when due, until SIGTERM/SIGINT.
  common::Expected<void> serve();
  // The earliest next try among the crashes still pending (0: none).
  int64_t next_due() const { return m_next_due; }

  const Settings& settings() const { return m_settings; }

private:
  Uploader(Settings settings, common::Store store, StateDir state, common::s3::Client client)
      : m_settings(std::move(settings)), m_store(std::move(store)), m_state(std::move(state)),
        m_client(std::move(client)) {}
  // Uploads what is missing of one crash; the state says what was done and what failed.
  common::Expected<void> upload_crash(const common::StoreEntry& entry, CrashState& state,
                                      SweepResult& result);
  common::Expected<bool> core_wanted(const std::string& signature);
  // Sends <id>.report beside the record's key base; false when it is gone (retention) or not
  // sent because of what the store holds (a link, a FIFO, too large: warned and counted). An
  // error is a failed upload only, which the sweep retries.
  common::Expected<bool> upload_report(const common::StoreEntry& entry, const std::string& base,
                                       const std::map<std::string, std::string>& meta);
  // The store's group files, when they changed since they were last uploaded.
  void upload_group_files();
  common::Expected<void> add_to_index(const std::string& day, const std::string& line,
                                      const std::string& id);
  void count(std::string_view kind, std::string_view result);
  std::string key_base(const common::StoreEntry& entry) const;

  Settings m_settings;
  common::Store m_store;
  StateDir m_state;
  common::s3::Client m_client;
  int64_t m_next_due = 0;
};

} // namespace uploader
