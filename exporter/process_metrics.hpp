// The standard process_* metrics every Prometheus exporter serves (what the Go and Python
// clients' process collectors export), read from /proc/self.
#pragma once

#include <prometheus/metric_family.h>

#include <string_view>
#include <vector>

namespace exporter {

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds. A value that cannot be
// read is left out rather than exported wrong.
std::vector<prometheus::MetricFamily> process_families();

// Parses the fields after the command name of /proc/<pid>/stat; exposed for tests.
struct ProcStat {
  double cpu_seconds = 0;    // utime + stime
  double start_seconds = 0;  // starttime, in seconds after boot
  double virtual_bytes = 0;  // vsize
  double resident_pages = 0; // rss
};
bool parse_proc_stat(std::string_view stat, long ticks_per_second, ProcStat& out);

} // namespace exporter
