// The exporter's side of crash groups: which groups it has seen (the persisted seen-set of
// common/packages/group_state), and the counters processcore_new_signatures_total and
// processcore_regressions_total, each event counted once across restarts and retention because
// the seen-set and the counts live in the store's `.groups/seen.json`, not in this process.
// No I/O here: the store watcher reads the files and writes the seen-set when settle() says so.
#pragma once

#include "common/packages/group_state.hpp"

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace exporter {

class GroupTracker {
public:
  // The seen-set read at start; nullopt when there is none (or it was unusable): the groups of
  // the first scan are then taken as seen without counting them, so that an upgrade to a
  // version with these counters, or a store that predates them, does not count every old group
  // as new.
  void load(std::optional<common::Seen> seen);
  // The resolve marks (corectl resolve), whenever their file changed; nullopt: none.
  void set_marks(std::optional<common::Marks> marks);

  // Whether a record of this group, crashed at `time`, needs its whole record parsed (observe()'s
  // `refines` and `version`): for a group not seen yet, or one with a mark it could regress.
  bool wants_details(const std::string& key, int64_t time) const;
  // A record the exporter counts for the first time (add_record()), with its labels; `refines`
  // and `version` only when wants_details() said so.
  void observe(std::string key, int64_t time, common::GroupLabel label, std::string refines,
               std::optional<common::CrashVersion> version);
  // Applies the observations in crash-time order; true when the seen-set changed and must be
  // written (before the counts are shown: seen() is what a restart will start from).
  bool settle();

  const common::Seen& seen() const { return m_seen; }

private:
  struct Observation {
    int64_t time = 0;
    std::string key;
    common::GroupLabel label;
    std::string refines;
    std::optional<common::CrashVersion> version;
  };

  const common::ResolveMark* mark_for(const std::string& key) const;
  static void bump(std::map<common::GroupLabel, uint64_t>& counts, common::GroupLabel label);
  void forget_oldest();

  common::Seen m_seen;
  common::Marks m_marks;
  bool m_have_marks = false;
  bool m_seeding = false; // no seen-set at start: the first settle() only seeds
  std::vector<Observation> m_pending;
  std::set<std::string> m_pending_keys; // unseen groups already asked for details
};

} // namespace exporter
