#include "exporter/crash_state.hpp"

#include "common/base/error.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <tuple>
#include <utility>

namespace exporter {

std::string_view to_string(SkipReason r) {
  switch (r) {
  case SkipReason::malformed:
    return "malformed";
  case SkipReason::io:
    return "io";
  case SkipReason::foreign:
    return "foreign";
  }
  return "malformed";
}

std::optional<uint64_t> parse_record_id(std::string_view id) {
  if (!common::is_record_id(id)) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (char c : id) {
    v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return v;
}

std::string format_record_id(uint64_t id) {
  return common::hex_digits(id, 16);
}

CrashState::CrashState(unsigned max_executables_per_host, unsigned max_hosts, unsigned max_series)
    : m_cap(max_executables_per_host), m_host_cap(max_hosts), m_series_cap(max_series) {}

uint32_t CrashState::series_index(const common::SeriesKey& key) {
  uint32_t exe = 0;
  if (auto it = m_executable_index.find(ExeView{key.hostname, key.executable});
      it != m_executable_index.end()) {
    exe = *it;
  } else {
    exe = static_cast<uint32_t>(m_executables.size());
    m_executables.push_back(Executable{key.hostname, key.executable});
    m_executable_index.insert(exe);
  }
  uint32_t signal = 0;
  if (auto it = m_signal_index.find(key.signal); it != m_signal_index.end()) {
    signal = it->second;
  } else {
    signal = static_cast<uint32_t>(m_signals.size());
    m_signals.push_back(key.signal);
    m_signal_index.emplace(key.signal, signal);
  }
  const auto [it, added] = m_series_index.try_emplace(series_key(exe, signal, key.core_present),
                                                      static_cast<uint32_t>(m_series.size()));
  if (added) {
    Series s;
    s.executable = exe;
    s.signal = signal;
    s.core_present = key.core_present;
    m_series.push_back(s);
  }
  return it->second;
}

void CrashState::truncate(size_t series, size_t executables, size_t signals) {
  for (size_t i = series; i < m_series.size(); ++i) {
    const Series& s = m_series[i];
    m_series_index.erase(series_key(s.executable, s.signal, s.core_present));
  }
  m_series.resize(series);
  for (size_t i = executables; i < m_executables.size(); ++i) {
    m_executable_index.erase(static_cast<uint32_t>(i));
  }
  m_executables.resize(executables);
  for (size_t i = signals; i < m_signals.size(); ++i) {
    m_signal_index.erase(m_signals[i]);
  }
  m_signals.resize(signals);
}

bool CrashState::add_record(uint64_t id, uint32_t dir, const common::SeriesKey& key, int64_t time,
                            uint64_t record_bytes, uint64_t core_bytes) {
  if (m_records.contains(id)) {
    return false;
  }
  const uint32_t s = series_index(key);
  Series& series = m_series[s];
  Executable& exe = m_executables[series.executable];
  if (time > 0) {
    exe.earliest = std::min(exe.earliest, time);
    series.last = std::max(series.last, time);
  }
  Entry e;
  e.core_bytes = core_bytes;
  e.series = s;
  e.dir = dir;
  e.record_bytes = static_cast<uint32_t>(std::min<uint64_t>(record_bytes, UINT32_MAX));
  e.generation = m_generation;
  e.counted = !m_pending.contains(id);
  series.live += e.counted ? 1U : 0U;
  series.bytes += e.core_bytes + e.record_bytes;
  m_records.emplace(id, e);
  return true;
}

void CrashState::drop(std::unordered_map<uint64_t, Entry>::iterator it) {
  Series& series = m_series[it->second.series];
  series.live -= it->second.counted ? 1U : 0U;
  series.bytes -= it->second.core_bytes + it->second.record_bytes;
  m_records.erase(it);
}

void CrashState::remove_record(uint64_t id, uint32_t dir) {
  auto it = m_records.find(id);
  // A copy of a record under another directory going away does not remove the original.
  if (it != m_records.end() && it->second.dir == dir) {
    drop(it);
  }
}

void CrashState::set_core_bytes(uint64_t id, uint32_t dir, uint64_t bytes) {
  auto it = m_records.find(id);
  if (it == m_records.end() || it->second.dir != dir) {
    return;
  }
  Series& series = m_series[it->second.series];
  series.bytes = series.bytes - it->second.core_bytes + bytes;
  it->second.core_bytes = bytes;
}

void CrashState::begin_rescan() {
  ++m_generation;
}

void CrashState::touch(uint64_t id) {
  if (auto it = m_records.find(id); it != m_records.end()) {
    it->second.generation = m_generation;
  }
}

void CrashState::end_rescan() {
  for (auto it = m_records.begin(); it != m_records.end();) {
    auto next = std::next(it);
    if (it->second.generation != m_generation) {
      drop(it);
    }
    it = next;
  }
}

void CrashState::set_ledger(const common::Ledger& ledger,
                            const std::function<bool(uint64_t id, uint32_t dir)>& exists) {
  (void)load_ledger(
      [&](const common::LedgerVisitor& visit) -> common::Expected<void> {
        for (const auto& [key, count] : ledger.counts) {
          common::LedgerSeries s{key, count, {}};
          if (auto t = ledger.times.find(key); t != ledger.times.end()) {
            s.times = t->second;
          }
          visit.series(std::move(s));
        }
        for (const auto& id : ledger.pending) {
          visit.pending(std::string(id));
        }
        return {};
      },
      exists);
}

common::Expected<void>
CrashState::load_ledger(const LedgerReader& read,
                        const std::function<bool(uint64_t id, uint32_t dir)>& exists) {
  // Entries are staged by series index (a series may appear more than once: the counts add up,
  // as in common::read_ledger); series the ledger brings are created as they come and
  // forgotten again if the read fails.
  struct Staged {
    uint32_t series;
    uint64_t count;
    common::SeriesTimes times;
  };
  const size_t old_series = m_series.size();
  const size_t old_executables = m_executables.size();
  const size_t old_signals = m_signals.size();
  std::vector<Staged> staged;
  std::unordered_set<uint64_t> pending;
  auto r = read(common::LedgerVisitor{[&](common::LedgerSeries&& s) {
                                        staged.push_back({series_index(s.key), s.count, s.times});
                                      },
                                      [&](std::string&& id) {
                                        if (auto n = parse_record_id(id)) {
                                          pending.insert(*n);
                                        }
                                      }});
  if (!r) {
    truncate(old_series, old_executables, old_signals);
    return r;
  }
  std::vector<uint64_t> before(m_series.size());
  for (size_t i = 0; i < m_series.size(); ++i) {
    before[i] = std::exchange(m_series[i].ledger, 0);
  }
  for (const Staged& st : staged) {
    Series& series = m_series[st.series];
    series.ledger += st.count;
    if (st.times.first > 0) {
      Executable& exe = m_executables[series.executable];
      exe.earliest = std::min(exe.earliest, st.times.first);
    }
    series.last = std::max(series.last, st.times.last);
  }
  std::vector<Staged>().swap(staged);
  // Only series whose ledger count grew can have records counted twice; checking them costs an
  // fstatat() per record of those series, and ledgers change only when someone runs a vacuum.
  std::vector<bool> grew(m_series.size(), false);
  bool any_grew = false;
  for (size_t i = 0; i < m_series.size(); ++i) {
    grew[i] = m_series[i].ledger > (i < before.size() ? before[i] : 0);
    any_grew = any_grew || grew[i];
  }
  m_pending.swap(pending);
  for (auto& series : m_series) {
    series.live = 0;
  }
  for (auto it = m_records.begin(); it != m_records.end();) {
    auto next = std::next(it);
    Entry& e = it->second;
    e.counted = !m_pending.contains(it->first);
    if (any_grew && e.counted && grew[e.series] && !exists(it->first, e.dir)) {
      // Already retired into the ledger; its deletion event is still on its way.
      e.counted = false;
      drop(it);
    } else {
      m_series[e.series].live += e.counted ? 1U : 0U;
    }
    it = next;
  }
  return {};
}

void CrashState::set_skipped(const std::string& relpath, std::optional<SkipReason> reason) {
  if (!reason) {
    m_skipped.erase(relpath);
    return;
  }
  const auto [it, added] = m_skipped.try_emplace(relpath, *reason);
  if (!added && it->second == *reason) {
    return; // known: named once, counted on every scrape
  }
  it->second = *reason;
  // The runbook sends operators to these lines; the store's owner can make any number of bad
  // files, so only the first k_max_named_skips of each hour are named, and the rest counted.
  const auto now = std::chrono::steady_clock::now();
  if (now - m_named_since > std::chrono::hours(1)) {
    m_named_since = now;
    m_named = 0;
  }
  if (m_named < k_max_named_skips) {
    spdlog::warn(
        "not counting {}: {}{}", common::printable(common::quoted(relpath)), to_string(*reason),
        ++m_named == k_max_named_skips ? " (further skipped files are counted in "
                                         "processcore_records_unreadable, not named, for an hour)"
                                       : "");
  }
}

void CrashState::settle() {
  // 1. Give executables seen for the first time their label, earliest crash first. At start-up
  // this orders the whole store; earliest crash times only move back when the ledger brings
  // older ones, and new executables crash "now", so the same executables win the per-host cap
  // on every start (see docs/exporter.md for where this can still change).
  std::vector<uint32_t> fresh;
  for (uint32_t i = 0; i < m_executables.size(); ++i) {
    if (m_executables[i].fold == Fold::unassigned) {
      fresh.push_back(i);
    }
  }
  std::sort(fresh.begin(), fresh.end(), [&](uint32_t a, uint32_t b) {
    const Executable& x = m_executables[a];
    const Executable& y = m_executables[b];
    return std::tie(x.earliest, x.hostname, x.executable) <
           std::tie(y.earliest, y.hostname, y.executable);
  });
  for (uint32_t i : fresh) {
    Executable& exe = m_executables[i];
    // The host first, by the same earliest-first order: a host keeps its own label once given.
    auto [host, host_new] = m_hosts.try_emplace(exe.hostname, Fold::own);
    if (host_new) {
      if (m_host_cap == 0 || m_own_hosts < m_host_cap) {
        ++m_own_hosts;
      } else {
        host->second = Fold::other;
        ++m_folded_hosts;
      }
    }
    exe.host_fold = host->second;
    const std::string& label_host =
        exe.host_fold == Fold::other ? std::string(k_other_host) : exe.hostname;
    auto& [own, other] = m_host_folds[label_host];
    if (m_cap == 0 || m_labelled.contains(ExeView{label_host, exe.executable})) {
      exe.fold = Fold::own; // under "other", folded hosts share an executable's series
    } else if (own < m_cap) {
      exe.fold = Fold::own;
      m_labelled.insert(i);
      ++own;
    } else {
      exe.fold = Fold::other;
      ++other;
    }
  }
  // New series in the same earliest-crash-first order, so that the global series cap keeps
  // the same series under their own labels on every start.
  std::vector<uint32_t> unexported;
  for (uint32_t i = 0; i < m_series.size(); ++i) {
    if (m_series[i].exported == k_unassigned) {
      unexported.push_back(i);
    }
  }
  // (earliest, hostname, executable, signal, core_present): common::SeriesKey's order.
  auto order = [&](uint32_t i) {
    const Series& s = m_series[i];
    const Executable& e = m_executables[s.executable];
    return std::tie(e.earliest, e.hostname, e.executable, m_signals[s.signal], s.core_present);
  };
  std::sort(unexported.begin(), unexported.end(),
            [&](uint32_t a, uint32_t b) { return order(a) < order(b); });
  for (uint32_t index : unexported) {
    Series& series = m_series[index];
    // Label values travel unchanged into Prometheus, Alertmanager, chat and terminals, and the
    // crashing program chooses its executable's name and its container's hostname: control
    // characters are written as corectl shows them (\x1b). Names that escape to the same text
    // share one series, so the exposition never holds two series with the same labels.
    const Executable& exe = m_executables[series.executable];
    common::SeriesKey labels{common::printable(exe.hostname), common::printable(exe.executable),
                             common::printable(m_signals[series.signal]), series.core_present};
    if (exe.host_fold == Fold::other) {
      labels.hostname = k_other_host;
    }
    if (exe.fold == Fold::other) {
      labels.executable = k_other_executable;
    }
    // The global cap: every exported series costs memory on each scrape (and in Prometheus),
    // and the per-host caps multiply (max_hosts × max_executables_per_host × signals).
    if (m_series_cap != 0 && m_exported.size() >= m_series_cap &&
        !m_exported_index.contains(labels)) {
      labels.hostname = k_other_host;
      labels.executable = k_other_executable;
      ++m_folded_series;
    }
    if (auto it = m_exported_index.find(labels); it != m_exported_index.end()) {
      series.exported = *it;
    } else {
      series.exported = static_cast<uint32_t>(m_exported.size());
      m_exported.push_back(Exported{std::move(labels)});
      m_exported_index.insert(series.exported);
    }
  }

  // 2. Sum the true series into the exported ones.
  std::vector<uint64_t> raw(m_exported.size(), 0);
  for (const Series& series : m_series) {
    raw[series.exported] += series.live + series.ledger;
    Exported& e = m_exported[series.exported];
    e.last = std::max(e.last, series.last);
  }

  // 3. Never export less than before. By the ledger protocol the sum cannot drop, but a record
  // deleted by hand (or by a tool that skips the ledger) would make it drop, and Prometheus
  // reads any drop as a counter reset: increase() then counts the whole value again and alerts
  // fire for crashes long past. The missing crashes go into `carry` rather than a clamp, so a
  // later crash still raises the counter by one.
  for (size_t i = 0; i < m_exported.size(); ++i) {
    Exported& e = m_exported[i];
    const uint64_t total = raw[i] + e.carry;
    if (total < e.value) {
      spdlog::warn(
          "processcore_coredumps_total{{hostname=\"{}\", executable=\"{}\", signal=\"{}\"}} would "
          "drop by {} (records removed without the ledger?); keeping the count",
          common::printable(e.labels.hostname), common::printable(e.labels.executable),
          common::printable(e.labels.signal), e.value - total);
      e.carry += e.value - total;
    } else {
      e.value = total;
    }
  }
}

Snapshot CrashState::snapshot() const {
  Snapshot snap;
  snap.series.reserve(m_exported.size());
  for (const Exported& e : m_exported) {
    // A series is shown from its first crash on; it then never goes back to zero.
    if (e.value > 0) {
      snap.series.push_back(SeriesSample{e.labels, e.value, e.last});
    }
  }
  std::map<std::string, HostSample> hosts;
  // Series come grouped by host (a ledger is sorted): the escaped name is made once a run.
  const std::string* run_host = nullptr;
  bool run_folded = false;
  HostSample* run = nullptr;
  for (const Series& series : m_series) {
    const Executable& exe = m_executables[series.executable];
    const bool folded = exe.host_fold == Fold::other;
    if (run == nullptr || folded != run_folded || (!folded && exe.hostname != *run_host)) {
      // Escaped like the crash series' hostname label (see settle()).
      const std::string name = folded ? std::string(k_other_host) : common::printable(exe.hostname);
      run = &hosts[name];
      run->hostname = name;
      run_host = &exe.hostname;
      run_folded = folded;
    }
    run->stored_bytes += series.bytes;
  }
  snap.folded_hosts = m_folded_hosts;
  snap.folded_series = m_folded_series;
  for (const auto& [hostname, folds] : m_host_folds) {
    const std::string name = common::printable(hostname);
    HostSample& h = hosts[name];
    h.hostname = name;
    h.folded_executables += folds.second;
  }
  for (auto& [hostname, h] : hosts) {
    snap.hosts.push_back(std::move(h));
  }
  for (const auto& [path, reason] : m_skipped) {
    ++snap.skipped[static_cast<size_t>(reason)];
  }
  for (const auto& [label, n] : m_groups.seen().new_counts) {
    snap.new_signatures.emplace_back(label, n);
  }
  for (const auto& [label, n] : m_groups.seen().regressions) {
    snap.regressions.emplace_back(label, n);
  }
  snap.records = m_records.size();
  snap.rescans = m_rescans;
  snap.scan_seconds = m_scan_seconds;
  return snap;
}

} // namespace exporter
