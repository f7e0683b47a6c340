#include "exporter/metrics.hpp"

#include "process_core_version.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

namespace exporter {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(const char* name, const char* help, MetricType type) {
  return MetricFamily{name, help, type, {}};
}

ClientMetric gauge(double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  return m;
}

} // namespace

std::vector<ClientMetric::Label> series_labels(const common::SeriesKey& k) {
  return {{"core_present", k.core_present ? "true" : "false"},
          {"executable", k.executable},
          {"hostname", k.hostname},
          {"signal", k.signal}};
}

std::vector<MetricFamily> to_families(const Snapshot& snap) {
  std::vector<MetricFamily> out;

  auto crashes = family(k_metric_crashes, k_help_crashes, MetricType::Counter);
  auto last = family(k_metric_last_crash, k_help_last_crash, MetricType::Gauge);
  for (const auto& s : snap.series) {
    ClientMetric m;
    m.label = series_labels(s.labels);
    m.counter.value = static_cast<double>(s.count);
    crashes.metric.push_back(std::move(m));
    if (s.last_crash > 0) {
      last.metric.push_back(gauge(static_cast<double>(s.last_crash), series_labels(s.labels)));
    }
  }
  out.push_back(std::move(crashes));
  out.push_back(std::move(last));

  auto bytes = family(k_metric_stored_bytes, k_help_stored_bytes, MetricType::Gauge);
  auto folded = family(k_metric_folded, k_help_folded, MetricType::Gauge);
  for (const auto& h : snap.hosts) {
    bytes.metric.push_back(gauge(static_cast<double>(h.stored_bytes), {{"hostname", h.hostname}}));
    folded.metric.push_back(
        gauge(static_cast<double>(h.folded_executables), {{"hostname", h.hostname}}));
  }
  out.push_back(std::move(bytes));
  out.push_back(std::move(folded));
  auto folded_hosts = family(k_metric_folded_hosts,
                             "Distinct hostnames counted under hostname=\"other\" (beyond "
                             "max_hosts).",
                             MetricType::Gauge);
  folded_hosts.metric.push_back(gauge(static_cast<double>(snap.folded_hosts), {}));
  out.push_back(std::move(folded_hosts));
  auto folded_series = family(k_metric_folded_series,
                              "Series counted under hostname=\"other\", executable=\"other\" "
                              "because max_series exported series existed already.",
                              MetricType::Gauge);
  folded_series.metric.push_back(gauge(static_cast<double>(snap.folded_series), {}));
  out.push_back(std::move(folded_series));

  auto unreadable = family(k_metric_unreadable,
                           "Files in the store that are not counted: malformed records, files "
                           "that could not be read, names the store does not use.",
                           MetricType::Gauge);
  for (size_t i = 0; i < k_skip_reasons; ++i) {
    unreadable.metric.push_back(
        gauge(static_cast<double>(snap.skipped[i]),
              {{"reason", std::string(to_string(static_cast<SkipReason>(i)))}}));
  }
  out.push_back(std::move(unreadable));

  auto records = family(k_metric_records, "Records currently in the store.", MetricType::Gauge);
  records.metric.push_back(gauge(static_cast<double>(snap.records)));
  out.push_back(std::move(records));

  auto scan = family(k_metric_scan_duration, "Duration of the last full scan of the store.",
                     MetricType::Gauge);
  scan.metric.push_back(gauge(snap.scan_seconds));
  out.push_back(std::move(scan));

  auto rescans = family(k_metric_rescans,
                        "Full rescans after start-up (inotify overflow, moved directories, "
                        "watch limit).",
                        MetricType::Counter);
  ClientMetric r;
  r.counter.value = static_cast<double>(snap.rescans);
  rescans.metric.push_back(std::move(r));
  out.push_back(std::move(rescans));

  auto info = family(k_metric_build_info, "Version of process-core-exporter.", MetricType::Gauge);
  info.metric.push_back(gauge(1, {{"version", PROCESS_CORE_VERSION}}));
  out.push_back(std::move(info));

  // Last, so that the streaming serializer's order is this one. Bounded labels only: the signature
  // would make a series per bug (docs/groups.md).
  const auto group_family = [&](const char* name, const char* help, const auto& counts) {
    auto f = family(name, help, MetricType::Counter);
    for (const auto& [label, n] : counts) {
      ClientMetric m;
      m.label = {
          {"executable", label.executable}, {"hostname", label.hostname}, {"signal", label.signal}};
      m.counter.value = static_cast<double>(n);
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  };
  group_family(k_metric_new_signatures,
               "Crash groups (signatures) seen for the first time, by the host, executable and "
               "signal of their first crash. Never decreases (kept in the store's seen-set).",
               snap.new_signatures);
  group_family(k_metric_regressions,
               "Crash groups marked resolved (corectl resolve) that crashed again in a version "
               "not older than the fix, once per mark.",
               snap.regressions);
  return out;
}

MetricFamily max_use_family(uint64_t max_use_bytes) {
  auto f = family(k_metric_max_use,
                  "The store's size cap (max_use) in bytes; compare with the sum of "
                  "processcore_stored_bytes.",
                  MetricType::Gauge);
  f.metric.push_back(gauge(static_cast<double>(max_use_bytes)));
  return f;
}

} // namespace exporter
