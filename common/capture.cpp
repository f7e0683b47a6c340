#include "common/capture.hpp"

#include "common/io.hpp"
#include "common/zstd_stream.hpp"

#include <zstd.h>

#include <fcntl.h>

#include <optional>
#include <vector>

namespace common {

namespace {

// One read of up to 1 MiB: large enough to amortise syscalls and let zstd's worker take whole
// jobs, small enough to keep the handler's footprint far below a crashing process's.
constexpr size_t k_read_size = 1 << 20;
// Input zstd may hold before producing output: a few jobs when threaded, a block or so inline.
constexpr uint64_t k_in_flight_threaded = 16 << 20;
constexpr uint64_t k_in_flight_inline = 256 << 10;
constexpr uint64_t k_threaded_min_room = 256 << 20;
// Frame header, last block header and checksum.
constexpr uint64_t k_frame_overhead = 64;

// Starts writeback of the output every few MiB, so that the fsync() that commits the core finds
// little left to write: the disk works while we compress instead of after. Without it the final
// fsync of a large core costs as much as a third of the handler's time.
class WritebackPacer {
public:
  explicit WritebackPacer(int fd) : m_fd(fd) {}
  void advance(uint64_t written) {
    if (m_fd < 0 || written - m_started < k_writeback_window) {
      return;
    }
    // Asynchronous: queues the range for writing and returns. Failure only costs speed.
    ::sync_file_range(m_fd, static_cast<off_t>(m_started), static_cast<off_t>(written - m_started),
                      SYNC_FILE_RANGE_WRITE);
    m_started = written;
  }

private:
  static constexpr uint64_t k_writeback_window = 8 << 20;
  int m_fd;
  uint64_t m_started = 0;
};

} // namespace

CaptureResult capture_stream(int in_fd, int out_fd, const CaptureOptions& options,
                             StreamObserver* observer) {
  CaptureResult result;
  std::optional<ZstdWriter> writer;
  bool storing = out_fd >= 0;
  // Threaded zstd holds up to a few jobs of input before any output appears, so with little
  // room the output limit could be overshot by that much: compress inline then.
  const int workers = options.max_stored < k_threaded_min_room ? 0 : options.workers;
  const uint64_t in_flight = workers > 0 ? k_in_flight_threaded : k_in_flight_inline;
  if (storing) {
    auto w = ZstdWriter::create(out_fd, options.level, workers);
    if (!w) {
      result.stop = CaptureStop::failed;
      result.error = w.error().message;
      storing = false;
    } else {
      writer.emplace(std::move(*w));
    }
  }
  auto stop_storing = [&](CaptureStop why) {
    storing = false;
    result.stop = why;
    if (why == CaptureStop::failed) {
      return;
    }
    // A cut core is still a complete zstd frame of the prefix we kept.
    if (auto r = writer->finish(); !r) {
      result.stop = CaptureStop::failed;
      result.error = r.error().message;
      result.sys_errno = r.error().sys_errno;
    }
    result.stored_size = writer->bytes_out();
  };

  WritebackPacer pacer(out_fd);
  std::vector<std::byte> buf(k_read_size);
  for (;;) {
    auto n = read_some(in_fd, buf);
    if (!n) {
      result.read_failed = true;
      result.error = "Failed to read the core from stdin: " + n.error().message;
      result.sys_errno = n.error().sys_errno;
      break;
    }
    if (*n == 0) {
      break;
    }
    const std::span<const std::byte> chunk(buf.data(), *n);
    result.received += *n;
    if (observer) {
      observer->observe(chunk);
    }
    if (!storing) {
      continue;
    }
    // Feed no more than could fit in max_stored even if incompressible, counting what zstd may
    // still hold: the output then never overshoots and never meets ENOSPC from our own writes.
    const uint64_t out_room = options.max_stored - std::min(options.max_stored, result.stored_size);
    const uint64_t held = std::min(result.stored_raw, in_flight);
    const uint64_t worst = ZSTD_COMPRESSBOUND(held + chunk.size()) - held + k_frame_overhead;
    uint64_t room = options.max_raw - result.stored_raw;
    bool out_limited = false;
    if (worst > out_room) {
      const uint64_t slack = out_room > ZSTD_COMPRESSBOUND(held) + k_frame_overhead
                                 ? out_room - ZSTD_COMPRESSBOUND(held) - k_frame_overhead
                                 : 0;
      // compressBound(n) is n + n/256 + a little: 255/256 of the slack is always safe.
      room = std::min(room, slack - slack / 256);
      out_limited = true;
    }
    const auto part = chunk.first(static_cast<size_t>(std::min<uint64_t>(room, chunk.size())));
    if (auto r = writer->write(part); !r) {
      result.error = r.error().message;
      result.sys_errno = r.error().sys_errno;
      stop_storing(CaptureStop::failed);
      continue;
    }
    result.stored_raw += part.size();
    result.stored_size = writer->bytes_out();
    pacer.advance(result.stored_size);
    if (out_limited && part.size() < chunk.size()) {
      stop_storing(CaptureStop::max_stored);
    } else if (part.size() < chunk.size() || result.stored_raw == options.max_raw) {
      stop_storing(CaptureStop::max_raw);
    }
  }
  if (storing) {
    if (auto r = writer->finish(); !r) {
      result.stop = CaptureStop::failed;
      result.error = r.error().message;
      result.sys_errno = r.error().sys_errno;
    }
    result.stored_size = writer->bytes_out();
  }
  return result;
}

} // namespace common
