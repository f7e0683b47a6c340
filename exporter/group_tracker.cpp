#include "exporter/group_tracker.hpp"

#include "common/base/escape.hpp"

#include <algorithm>
#include <tuple>

namespace exporter {

void GroupTracker::load(std::optional<common::Seen> seen) {
  m_seeding = !seen;
  m_seen = seen ? std::move(*seen) : common::Seen{};
}

void GroupTracker::set_marks(std::optional<common::Marks> marks) {
  m_have_marks = marks.has_value();
  m_marks = marks ? std::move(*marks) : common::Marks{};
}

const common::ResolveMark* GroupTracker::mark_for(const std::string& key) const {
  if (auto it = m_marks.by_group.find(key); it != m_marks.by_group.end()) {
    return &it->second;
  }
  if (auto s = m_seen.groups.find(key); s != m_seen.groups.end() && !s->second.parent.empty()) {
    if (auto it = m_marks.by_group.find(s->second.parent); it != m_marks.by_group.end()) {
      return &it->second;
    }
  }
  return nullptr;
}

bool GroupTracker::wants_details(const std::string& key, int64_t time) const {
  if (!m_seen.groups.contains(key)) {
    return !m_pending_keys.contains(key);
  }
  const common::ResolveMark* mark = mark_for(key);
  return mark != nullptr && time > mark->time && !m_seen.regressed.contains(mark->event_id());
}

void GroupTracker::observe(std::string key, int64_t time, common::GroupLabel label,
                           std::string refines, std::optional<common::CrashVersion> version) {
  if (!m_seen.groups.contains(key)) {
    m_pending_keys.insert(key);
  } else if (!version) {
    return; // seen, and nothing to decide about it
  }
  m_pending.push_back(
      Observation{time, std::move(key), std::move(label), std::move(refines), std::move(version)});
}

void GroupTracker::bump(std::map<common::GroupLabel, uint64_t>& counts, common::GroupLabel label) {
  // Labels are bounded like processcore_coredumps_total's: past the cap a new label set counts
  // under hostname and executable "other" (with its signal).
  if (!counts.contains(label) && counts.size() >= common::k_max_counter_series) {
    label.hostname = "other";
    label.executable = "other";
  }
  ++counts[std::move(label)];
}

void GroupTracker::forget_oldest() {
  if (m_seen.groups.size() <= common::k_max_seen) {
    return;
  }
  std::vector<std::pair<int64_t, std::string>> by_first;
  by_first.reserve(m_seen.groups.size());
  for (const auto& [key, g] : m_seen.groups) {
    by_first.emplace_back(g.first, key);
  }
  const size_t excess = m_seen.groups.size() - common::k_max_seen;
  std::nth_element(by_first.begin(), by_first.begin() + static_cast<std::ptrdiff_t>(excess),
                   by_first.end());
  for (size_t i = 0; i < excess; ++i) {
    m_seen.groups.erase(by_first[i].second);
  }
}

bool GroupTracker::settle() {
  // The first settle after a start without a seen-set writes one even for an empty store: a
  // restart must not seed again and so miss the groups that appeared meanwhile.
  bool changed = m_seeding;
  std::sort(m_pending.begin(), m_pending.end(), [](const Observation& a, const Observation& b) {
    return std::tie(a.time, a.key) < std::tie(b.time, b.key);
  });
  for (Observation& o : m_pending) {
    // Label values reach Prometheus, chat and terminals: escaped as processcore_coredumps_total's.
    o.label = {common::printable(o.label.hostname), common::printable(o.label.executable),
               common::printable(o.label.signal)};
    if (!m_seen.groups.contains(o.key)) {
      common::SeenGroup g{o.time, o.label, {}};
      // A new signature version of a crash already seen continues its group: not new.
      if (auto p = m_seen.groups.find(o.refines); !o.refines.empty() && p != m_seen.groups.end()) {
        g = common::SeenGroup{p->second.first, p->second.label, o.refines};
      } else if (!m_seeding) {
        bump(m_seen.new_counts, o.label);
      }
      m_seen.groups.emplace(o.key, std::move(g));
      changed = true;
    }
    const common::ResolveMark* mark = mark_for(o.key);
    if (mark != nullptr && o.version && o.time > mark->time &&
        !m_seen.regressed.contains(mark->event_id()) && common::regresses(*mark, *o.version)) {
      bump(m_seen.regressions, o.label);
      m_seen.regressed.insert(mark->event_id());
      changed = true;
    }
  }
  m_pending.clear();
  m_pending_keys.clear();
  m_seeding = false;
  // Regressions of marks that no longer exist cannot happen again: forgetting them bounds the
  // set by the marks (an unresolve then a resolve is a new mark, with a new time).
  if (m_have_marks) {
    for (auto it = m_seen.regressed.begin(); it != m_seen.regressed.end();) {
      const size_t at = it->rfind('@');
      auto mark = at == std::string::npos ? m_marks.by_group.end()
                                          : m_marks.by_group.find(it->substr(0, at));
      if (mark == m_marks.by_group.end() || mark->second.event_id() != *it) {
        it = m_seen.regressed.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
  }
  if (m_seen.groups.size() > common::k_max_seen) {
    forget_oldest();
    changed = true;
  }
  return changed;
}

} // namespace exporter
