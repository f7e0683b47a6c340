// The /metrics view of a CrashState snapshot, in prometheus-cpp's metric model (written out by
// serializer.hpp).
#pragma once

#include "exporter/crash_state.hpp"

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace exporter {

// Metric names (documented in docs/exporter.md).
inline constexpr const char* k_metric_crashes = "processcore_coredumps_total";
inline constexpr const char* k_metric_last_crash = "processcore_last_crash_timestamp_seconds";
inline constexpr const char* k_metric_stored_bytes = "processcore_stored_bytes";
inline constexpr const char* k_metric_folded = "processcore_executables_folded";
inline constexpr const char* k_metric_folded_hosts = "processcore_hosts_folded";
inline constexpr const char* k_metric_folded_series = "processcore_series_folded";
inline constexpr const char* k_metric_unreadable = "processcore_records_unreadable";
inline constexpr const char* k_metric_records = "processcore_records";
inline constexpr const char* k_metric_scan_duration = "processcore_scan_duration_seconds";
inline constexpr const char* k_metric_rescans = "processcore_rescans_total";
inline constexpr const char* k_metric_build_info = "processcore_build_info";
inline constexpr const char* k_metric_new_signatures = "processcore_new_signatures_total";
inline constexpr const char* k_metric_regressions = "processcore_regressions_total";

inline constexpr const char* k_metric_max_use = "processcore_store_max_use_bytes";

// The help texts of the families the streaming serialiser writes itself.
inline constexpr const char* k_help_crashes =
    "Crashes captured, by host, executable, signal and whether a core was stored. Never "
    "decreases (retired records are kept in the ledger).";
inline constexpr const char* k_help_last_crash = "Time of the latest crash of the series.";
inline constexpr const char* k_help_stored_bytes =
    "Bytes on disk of the records and cores of a host.";
inline constexpr const char* k_help_folded =
    "Distinct executables of a host counted under "
    "executable=\"other\" (beyond max_executables_per_host).";

// The labels of a processcore_coredumps_total (and last-crash) series, in exposition order.
std::vector<prometheus::ClientMetric::Label> series_labels(const common::SeriesKey& k);

// processcore_store_max_use_bytes: the store's max_use, resolved for its file system.
prometheus::MetricFamily max_use_family(uint64_t max_use_bytes);

// Turns a snapshot into metric families (pure: the serializer writes the small ones from it;
// tests compare with all of them).
std::vector<prometheus::MetricFamily> to_families(const Snapshot& snap);

} // namespace exporter
