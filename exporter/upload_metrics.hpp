// The uploader's metrics, served by the exporter (no second metrics port): read per scrape from
// the files process-core-uploader keeps in its state directory (.counters.json, .status.json).
#pragma once

#include <prometheus/metric_family.h>

#include <cstdint>
#include <string>
#include <vector>

namespace exporter {

// processcore_uploads_total{kind, result}, processcore_upload_backlog,
// processcore_upload_oldest_pending_seconds and processcore_upload_last_sweep_timestamp_seconds
// from `state_dir`, at `now` (epoch seconds). The files are the store user's: read bounded, and
// a value of the wrong type is left out rather than exported wrong. Nothing when the directory
// has neither file (no uploader runs).
std::vector<prometheus::MetricFamily> upload_families(const std::string& state_dir, int64_t now);

} // namespace exporter
