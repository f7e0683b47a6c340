// The /metrics body, written piece by piece as the client reads it: Prometheus text format
// 0.0.4 or OpenMetrics 1.0, optionally gzip-compressed. Only the snapshot (copied under the
// state's lock) and one piece of text are in memory at a time, never the whole page.
#pragma once

#include "exporter/crash_state.hpp"

#include <prometheus/metric_family.h>

#include <zlib.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace exporter {

// The exposition format, negotiated from the request's Accept header.
enum class Format { text, openmetrics };
// The body's encoding, negotiated from Accept-Encoding.
enum class Compression { none, gzip };

// OpenMetrics when `accept` lists application/openmetrics-text (without q=0), text otherwise.
Format negotiate_format(std::string_view accept);
// gzip when `accept_encoding` lists it (without q=0).
Compression negotiate_compression(std::string_view accept_encoding);
// The Content-Type of a format.
std::string_view content_type(Format format);

class MetricsStream {
public:
  // Serialises `snap` (the processcore_* series) followed by `extra` (small families).
  MetricsStream(Snapshot snap, std::vector<prometheus::MetricFamily> extra, Format format,
                Compression compression);
  ~MetricsStream();
  MetricsStream(const MetricsStream&) = delete;
  MetricsStream& operator=(const MetricsStream&) = delete;

  // Writes up to `max` bytes of the body to `buf`; returns how many, 0 at the end, -1 when
  // compression failed.
  long read(char* buf, size_t max);

  // The whole body at once (tests and small pages).
  std::string read_all();

private:
  enum class Stage { crashes, last_crash, stored_bytes, folded, rest, end, done };

  // Appends the next piece of text to m_text; false once everything was written.
  bool generate();
  void header(std::string_view name, std::string_view help, prometheus::MetricType type);
  void sample(std::string_view name, const std::vector<prometheus::ClientMetric::Label>& labels,
              double value);
  // One processcore_coredumps_total or last-crash sample, labelled as series_labels() does.
  void series_sample(std::string_view name, const common::SeriesKey& k, double value);
  void family(const prometheus::MetricFamily& f);

  Snapshot m_snap;
  std::vector<prometheus::MetricFamily> m_extra;
  Format m_format;
  Compression m_compression;
  Stage m_stage = Stage::crashes;
  size_t m_index = 0;   // the next item of the current stage
  std::string m_text;   // text generated and not yet handed out (or compressed)
  size_t m_offset = 0;  // of the first byte of m_text not yet consumed
  z_stream m_zstream{}; // gzip state when m_compression is gzip
  bool m_zstream_ready = false;
  bool m_zstream_end = false;
};

} // namespace exporter
