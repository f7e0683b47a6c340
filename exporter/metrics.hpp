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
inline constexpr const char* k_metric_crashes = "processcore_coredumps_total";
inline constexpr const char* k_metric_last_crash = "processcore_last_crash_timestamp_seconds";
inline constexpr const char* k_metric_stored_bytes = "processcore_stored_bytes";
inline constexpr const char* k_metric_folded = "processcore_executables_folded";
inline constexpr const char* k_metric_folded_hosts = "processcore_hosts_folded";
inline constexpr const char* k_metric_unreadable = "processcore_records_unreadable";
inline constexpr const char* k_metric_records = "processcore_records";
inline constexpr const char* k_metric_scan_duration = "processcore_scan_duration_seconds";
inline constexpr const char* k_metric_rescans = "processcore_rescans_total";
inline constexpr const char* k_metric_build_info = "processcore_build_info";

inline constexpr const char* k_metric_max_use = "processcore_store_max_use_bytes";

// processcore_store_max_use_bytes: the store's max_use, resolved for its file system.
prometheus::MetricFamily max_use_family(uint64_t max_use_bytes);

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
