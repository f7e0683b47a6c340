#include "exporter/upload_metrics.hpp"

#include "common/base/io.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>

#include <optional>

namespace exporter {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Both files are a few hundred bytes; anything larger is not the uploader's.
constexpr size_t k_max_file_bytes = 64 << 10;
// Counter labels come from the file: only these pairs are exported.
constexpr const char* k_kinds[] = {"record", "report", "core", "groups"};
constexpr const char* k_results[] = {"ok", "failed"};

std::optional<nlohmann::json> read_json(const std::string& dir, const std::string& name) {
  auto dirfd = common::open_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
  if (!dirfd) {
    return std::nullopt;
  }
  auto fd = common::open_at(dirfd->get(), name, O_RDONLY);
  if (!fd) {
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    auto n = common::read_some(fd->get(), std::as_writable_bytes(std::span(buf)));
    if (!n || text.size() + *n > k_max_file_bytes) {
      return std::nullopt;
    }
    if (*n == 0) {
      break;
    }
    text.append(buf, *n);
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) {
    return std::nullopt;
  }
  return j;
}

std::optional<double> number(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) {
    return std::nullopt;
  }
  return static_cast<double>(it->get<uint64_t>());
}

void gauge(std::vector<MetricFamily>& out, const char* name, const char* help, double v) {
  ClientMetric m;
  m.gauge.value = v;
  out.push_back(MetricFamily{name, help, MetricType::Gauge, {m}});
}

} // namespace

std::vector<MetricFamily> upload_families(const std::string& state_dir, int64_t now) {
  std::vector<MetricFamily> out;
  const auto counters = read_json(state_dir, ".counters.json");
  const auto status = read_json(state_dir, ".status.json");
  if (!counters && !status) {
    return out;
  }
  MetricFamily uploads{"processcore_uploads_total",
                       "Uploads to object storage by process-core-uploader, by kind and result",
                       MetricType::Counter,
                       {}};
  for (const char* kind : k_kinds) {
    for (const char* result : k_results) {
      ClientMetric m;
      m.label = {{"kind", kind}, {"result", result}};
      if (counters) {
        m.counter.value = number(*counters, (std::string(kind) + "/" + result).c_str()).value_or(0);
      }
      uploads.metric.push_back(std::move(m));
    }
  }
  out.push_back(std::move(uploads));
  if (status) {
    if (auto b = number(*status, "backlog")) {
      gauge(out, "processcore_upload_backlog", "Crashes not yet (fully) uploaded", *b);
    }
    if (auto o = number(*status, "oldest_pending")) {
      const double age =
          *o > 0 && static_cast<double>(now) > *o ? static_cast<double>(now) - *o : 0;
      gauge(out, "processcore_upload_oldest_pending_seconds",
            "Age of the oldest crash not yet uploaded (0: none)", age);
    }
    if (auto l = number(*status, "last_sweep")) {
      gauge(out, "processcore_upload_last_sweep_timestamp_seconds",
            "When process-core-uploader last went through the store", *l);
    }
  }
  return out;
}

} // namespace exporter
