#include "exporter/serializer.hpp"

#include "exporter/metrics.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace exporter {

namespace {

// Text is generated in pieces of about this size: large enough for few calls, small enough
// that a page of 100,000 series never exists in memory at once.
constexpr size_t k_piece = 32 << 10;
constexpr int k_gzip_level = 6;
constexpr int k_gzip_window = 15 + 16; // 15-bit window, gzip header and trailer

// True when the comma-separated media list `header` has `item` with a non-zero q.
bool accepts(std::string_view header, std::string_view item) {
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view part = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    while (!part.empty() && part.front() == ' ') {
      part.remove_prefix(1);
    }
    if (!part.starts_with(item)) {
      continue;
    }
    const std::string_view rest = part.substr(item.size());
    if (!rest.empty() && rest.front() != ';' && rest.front() != ' ') {
      continue; // "gzipx", "application/openmetrics-textual"
    }
    const size_t q = rest.find("q=");
    if (q != std::string_view::npos) {
      const std::string_view v = rest.substr(q + 2);
      if (v.starts_with("0") && v.find_first_not_of("0.", 0) >= std::min(v.size(), v.find(';'))) {
        continue; // q=0, q=0.0, q=0.000: refused
      }
    }
    return true;
  }
  return false;
}

std::string_view type_name(prometheus::MetricType type, Format format) {
  switch (type) {
  case prometheus::MetricType::Counter:
    return "counter";
  case prometheus::MetricType::Gauge:
    return "gauge";
  case prometheus::MetricType::Summary:
    return "summary";
  case prometheus::MetricType::Histogram:
    return "histogram";
  default:
    return format == Format::openmetrics ? "unknown" : "untyped";
  }
}

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    // Whole numbers (counts, epoch seconds, bytes) in full, as prometheus-cpp writes them,
    // not the shortest form ("1.7e+09"); other values in the shortest exact form.
    char buf[64];
    const bool whole = std::abs(v) < 1e15 && v == std::trunc(v);
    const auto r = whole ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed)
                         : std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

// Label values: backslash, double quote and line feed escaped, as both formats require.
void append_label_value(std::string& out, std::string_view v) {
  while (!v.empty()) {
    size_t n = 0; // (find_first_of() calls memchr() for every character)
    while (n < v.size() && v[n] != '\\' && v[n] != '"' && v[n] != '\n') {
      ++n;
    }
    out.append(v.data(), n); // the run without anything to escape, in one piece
    if (n == v.size()) {
      break;
    }
    out += v[n] == '\\' ? "\\\\" : v[n] == '"' ? "\\\"" : "\\n";
    v.remove_prefix(n + 1);
  }
}

} // namespace

Format negotiate_format(std::string_view accept) {
  return accepts(accept, "application/openmetrics-text") ? Format::openmetrics : Format::text;
}

Compression negotiate_compression(std::string_view accept_encoding) {
  return accepts(accept_encoding, "gzip") ? Compression::gzip : Compression::none;
}

std::string_view content_type(Format format) {
  return format == Format::openmetrics
             ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
             : "text/plain; version=0.0.4; charset=utf-8";
}

MetricsStream::MetricsStream(Snapshot snap, std::vector<prometheus::MetricFamily> extra,
                             Format format, Compression compression)
    : m_snap(std::move(snap)), m_extra(std::move(extra)), m_format(format),
      m_compression(compression) {
  if (m_compression == Compression::gzip) {
    m_zstream_ready = deflateInit2(&m_zstream, k_gzip_level, Z_DEFLATED, k_gzip_window, 8,
                                   Z_DEFAULT_STRATEGY) == Z_OK;
  }
}

MetricsStream::~MetricsStream() {
  if (m_zstream_ready) {
    deflateEnd(&m_zstream);
  }
}

void MetricsStream::header(std::string_view name, std::string_view help,
                           prometheus::MetricType type) {
  // OpenMetrics names a counter family without the _total its samples carry; a counter
  // without it is exported as unknown rather than renamed.
  if (m_format == Format::openmetrics && type == prometheus::MetricType::Counter) {
    if (name.ends_with("_total")) {
      name.remove_suffix(6);
    } else {
      type = prometheus::MetricType::Untyped;
    }
  }
  m_text += "# HELP ";
  m_text += name;
  m_text += ' ';
  for (char c : help) {
    if (c == '\\') {
      m_text += "\\\\";
    } else if (c == '\n') {
      m_text += "\\n";
    } else if (c == '"' && m_format == Format::openmetrics) {
      m_text += "\\\"";
    } else {
      m_text += c;
    }
  }
  m_text += "\n# TYPE ";
  m_text += name;
  m_text += ' ';
  m_text += type_name(type, m_format);
  m_text += '\n';
}

void MetricsStream::sample(std::string_view name,
                           const std::vector<prometheus::ClientMetric::Label>& labels,
                           double value) {
  m_text += name;
  if (!labels.empty()) {
    m_text += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      m_text += i == 0 ? "" : ",";
      m_text += labels[i].name;
      m_text += "=\"";
      append_label_value(m_text, labels[i].value);
      m_text += '"';
    }
    m_text += '}';
  }
  m_text += ' ';
  append_value(m_text, value);
  m_text += '\n';
}

void MetricsStream::series_sample(std::string_view name, const common::SeriesKey& k, double value) {
  // sample(name, series_labels(k), value) without building the label vector: these are the
  // bulk of a large page.
  m_text += name;
  m_text += k.core_present ? "{core_present=\"true\",executable=\""
                           : "{core_present=\"false\",executable=\"";
  append_label_value(m_text, k.executable);
  m_text += "\",hostname=\"";
  append_label_value(m_text, k.hostname);
  m_text += "\",signal=\"";
  append_label_value(m_text, k.signal);
  m_text += "\"} ";
  append_value(m_text, value);
  m_text += '\n';
}

void MetricsStream::family(const prometheus::MetricFamily& f) {
  header(f.name, f.help, f.type);
  for (const auto& m : f.metric) {
    const double v = f.type == prometheus::MetricType::Counter ? m.counter.value
                     : f.type == prometheus::MetricType::Gauge ? m.gauge.value
                                                               : m.untyped.value;
    sample(f.name, m.label, v);
  }
}

bool MetricsStream::generate() {
  // The large families are written a piece at a time from the snapshot; the small rest as
  // prometheus-cpp families, built only once the large ones are done.
  auto next_stage = [&](Stage s) {
    m_stage = s;
    m_index = 0;
  };
  while (m_text.size() - m_offset < k_piece) {
    switch (m_stage) {
    case Stage::crashes:
      if (m_index == 0) {
        header(k_metric_crashes, k_help_crashes, prometheus::MetricType::Counter);
      }
      for (; m_index < m_snap.series.size() && m_text.size() < k_piece; ++m_index) {
        const auto& s = m_snap.series[m_index];
        series_sample(k_metric_crashes, s.labels, static_cast<double>(s.count));
      }
      if (m_index >= m_snap.series.size()) {
        next_stage(Stage::last_crash);
      }
      break;
    case Stage::last_crash:
      if (m_index == 0) {
        header(k_metric_last_crash, k_help_last_crash, prometheus::MetricType::Gauge);
      }
      for (; m_index < m_snap.series.size() && m_text.size() < k_piece; ++m_index) {
        const auto& s = m_snap.series[m_index];
        if (s.last_crash > 0) {
          series_sample(k_metric_last_crash, s.labels, static_cast<double>(s.last_crash));
        }
      }
      if (m_index >= m_snap.series.size()) {
        // The series are no longer needed: their memory goes back before the rest is made.
        std::vector<SeriesSample>().swap(m_snap.series);
        next_stage(Stage::stored_bytes);
      }
      break;
    case Stage::stored_bytes:
    case Stage::folded: {
      const bool bytes = m_stage == Stage::stored_bytes;
      if (m_index == 0) {
        header(bytes ? k_metric_stored_bytes : k_metric_folded,
               bytes ? k_help_stored_bytes : k_help_folded, prometheus::MetricType::Gauge);
      }
      for (; m_index < m_snap.hosts.size() && m_text.size() < k_piece; ++m_index) {
        const auto& h = m_snap.hosts[m_index];
        sample(bytes ? k_metric_stored_bytes : k_metric_folded, {{"hostname", h.hostname}},
               static_cast<double>(bytes ? h.stored_bytes : h.folded_executables));
      }
      if (m_index >= m_snap.hosts.size()) {
        next_stage(bytes ? Stage::folded : Stage::rest);
      }
      break;
    }
    case Stage::rest: {
      std::vector<HostSample>().swap(m_snap.hosts);
      for (const auto& f : to_families(m_snap)) {
        if (f.name != k_metric_crashes && f.name != k_metric_last_crash &&
            f.name != k_metric_stored_bytes && f.name != k_metric_folded) {
          family(f);
        }
      }
      for (const auto& f : m_extra) {
        family(f);
      }
      next_stage(Stage::end);
      break;
    }
    case Stage::end:
      if (m_format == Format::openmetrics) {
        m_text += "# EOF\n";
      }
      next_stage(Stage::done);
      break;
    case Stage::done:
      return m_text.size() > m_offset;
    }
    if (m_stage != Stage::done && m_text.size() - m_offset >= k_piece) {
      break;
    }
  }
  return true;
}

long MetricsStream::read(char* buf, size_t max) {
  if (max == 0) {
    return 0;
  }
  if (m_compression == Compression::none) {
    if (m_offset == m_text.size()) {
      m_text.clear();
      m_offset = 0;
      if (!generate()) {
        return 0;
      }
    }
    const size_t n = std::min(max, m_text.size() - m_offset);
    std::memcpy(buf, m_text.data() + m_offset, n);
    m_offset += n;
    return static_cast<long>(n);
  }
  if (!m_zstream_ready) {
    return -1;
  }
  m_zstream.next_out = reinterpret_cast<Bytef*>(buf);
  m_zstream.avail_out = static_cast<uInt>(std::min<size_t>(max, UINT32_MAX));
  while (m_zstream.avail_out > 0 && !m_zstream_end) {
    if (m_offset == m_text.size()) {
      m_text.clear();
      m_offset = 0;
      generate();
    }
    const bool last = m_stage == Stage::done && m_offset == m_text.size();
    m_zstream.next_in = reinterpret_cast<Bytef*>(m_text.data() + m_offset);
    m_zstream.avail_in = static_cast<uInt>(m_text.size() - m_offset);
    const int r = deflate(&m_zstream, last ? Z_FINISH : Z_NO_FLUSH);
    m_offset = m_text.size() - m_zstream.avail_in;
    if (r == Z_STREAM_END) {
      m_zstream_end = true;
    } else if (r != Z_OK && r != Z_BUF_ERROR) {
      return -1;
    }
  }
  return static_cast<long>(max - m_zstream.avail_out);
}

std::string MetricsStream::read_all() {
  std::string out;
  char buf[16384];
  for (long n; (n = read(buf, sizeof buf)) > 0;) {
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

} // namespace exporter
