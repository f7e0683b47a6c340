// The /metrics view of a CrashState, as a prometheus-cpp Collectable.
#pragma once

#include "exporter/crash_state.hpp"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <mutex>
#include <string>
#include <vector>

namespace exporter {

// Metric names (documented in docs/exporter.md).
inline constexpr const char* k_metric_crashes = "coredumps_total";
inline constexpr const char* k_metric_last_crash = "process_core_last_crash_timestamp_seconds";
inline constexpr const char* k_metric_stored_bytes = "process_core_stored_bytes";
inline constexpr const char* k_metric_folded = "process_core_executables_folded";
inline constexpr const char* k_metric_folded_hosts = "processcore_hosts_folded";
inline constexpr const char* k_metric_unreadable = "process_core_records_unreadable";
inline constexpr const char* k_metric_records = "process_core_records";
inline constexpr const char* k_metric_scan_duration = "process_core_scan_duration_seconds";
inline constexpr const char* k_metric_rescans = "process_core_rescans_total";
inline constexpr const char* k_metric_build_info = "process_core_build_info";

// Turns a snapshot into metric families (pure: used by the collector and by tests).
std::vector<prometheus::MetricFamily> to_families(const Snapshot& snap);

class MetricsCollector : public prometheus::Collectable {
public:
  // Reads `state` under `mutex` on every scrape.
  MetricsCollector(const CrashState& state, std::mutex& mutex) : m_state(state), m_mutex(mutex) {}

  // A snapshot taken under the lock, serialised outside it.
  std::vector<prometheus::MetricFamily> Collect() const override;

private:
  const CrashState& m_state;
  std::mutex& m_mutex;
};

} // namespace exporter
