#include "exporter/process_metrics.hpp"

#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/proc_stat.hpp"

#include <prometheus/client_metric.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ctime>
#include <string>

namespace exporter {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

void add(std::vector<MetricFamily>& out, const char* name, const char* help, MetricType type,
         double value) {
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  out.push_back(MetricFamily{name, help, type, {m}});
}

// The boot time as the wall clock sees it now. Not /proc/stat's btime: the exporter's unit has
// ProcSubset=pid, which hides it. The process start time in /proc/<pid>/stat counts from boot
// on CLOCK_BOOTTIME (suspend included), so this is its epoch.
double boot_time() {
  timespec real{};
  timespec boot{};
  ::clock_gettime(CLOCK_REALTIME, &real);
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  return static_cast<double>(real.tv_sec - boot.tv_sec) +
         static_cast<double>(real.tv_nsec - boot.tv_nsec) / 1e9;
}

long open_fds() {
  const auto dir = common::open_at(AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY);
  if (!dir) {
    return -1;
  }
  long n = 0;
  if (!common::list_dir(dir->get(), [&](std::string_view) { ++n; })) {
    return -1;
  }
  return n - 2; // the directory's own descriptor and the one list_dir() reads it through
}

} // namespace

bool parse_proc_stat(std::string_view stat, long ticks_per_second, ProcStat& out) {
  const auto fields = common::stat_fields(stat);
  if (fields.size() < 24 || ticks_per_second <= 0) {
    return false;
  }
  // Fields numbered as in proc(5): utime 14, stime 15, starttime 22, vsize 23, rss 24.
  auto field = [&](size_t n) { return common::parse_number<uint64_t>(fields[n - 1]); };
  const auto utime = field(14), stime = field(15), start = field(22), vsize = field(23);
  const auto rss = common::parse_number<int64_t>(fields[24 - 1]);
  if (!utime || !stime || !start || !vsize || !rss) {
    return false;
  }
  const double hz = static_cast<double>(ticks_per_second);
  out.cpu_seconds = static_cast<double>(*utime + *stime) / hz;
  out.start_seconds = static_cast<double>(*start) / hz;
  out.virtual_bytes = static_cast<double>(*vsize);
  out.resident_pages = static_cast<double>(*rss);
  return true;
}

std::vector<MetricFamily> process_families() {
  std::vector<MetricFamily> out;
  ProcStat st;
  auto text = common::read_file(AT_FDCWD, "/proc/self/stat", 4096);
  if (text && parse_proc_stat(*text, ::sysconf(_SC_CLK_TCK), st)) {
    add(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
        MetricType::Counter, st.cpu_seconds);
    add(out, "process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
        st.resident_pages * static_cast<double>(::sysconf(_SC_PAGESIZE)));
    add(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
        st.virtual_bytes);
    add(out, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge, boot_time() + st.start_seconds);
  }
  if (const long fds = open_fds(); fds >= 0) {
    add(out, "process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
        static_cast<double>(fds));
  }
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    add(out, "process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
        static_cast<double>(lim.rlim_cur));
  }
  return out;
}

} // namespace exporter
