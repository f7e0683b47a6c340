#include "common/capture.hpp"

#include "common/io.hpp"
#include "common/zstd_stream.hpp"

#include <optional>
#include <vector>

namespace common {

namespace {

// One read of up to 1 MiB: large enough to amortise syscalls and let zstd's worker take whole
// jobs, small enough to keep the handler's footprint far below a crashing process's.
constexpr size_t k_read_size = 1 << 20;

} // namespace

CaptureResult capture_stream(int in_fd, int out_fd, const CaptureOptions& options,
                             StreamObserver* observer) {
  CaptureResult result;
  std::optional<ZstdWriter> writer;
  bool storing = out_fd >= 0;
  if (storing) {
    auto w = ZstdWriter::create(out_fd, options.level, options.workers);
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
    }
    result.stored_size = writer->bytes_out();
  };

  std::vector<std::byte> buf(k_read_size);
  for (;;) {
    auto n = read_some(in_fd, buf);
    if (!n) {
      result.read_failed = true;
      result.error = "Failed to read the core from stdin: " + n.error().message;
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
    const uint64_t room = options.max_raw - result.stored_raw;
    const auto part = chunk.first(static_cast<size_t>(std::min<uint64_t>(room, chunk.size())));
    if (auto r = writer->write(part); !r) {
      result.error = r.error().message;
      stop_storing(CaptureStop::failed);
      continue;
    }
    result.stored_raw += part.size();
    result.stored_size = writer->bytes_out();
    if (part.size() < chunk.size() || result.stored_raw == options.max_raw) {
      stop_storing(CaptureStop::max_raw);
    } else if (result.stored_size >= options.max_stored) {
      stop_storing(CaptureStop::max_stored);
    }
  }
  if (storing) {
    if (auto r = writer->finish(); !r) {
      result.stop = CaptureStop::failed;
      result.error = r.error().message;
    }
    result.stored_size = writer->bytes_out();
  }
  return result;
}

} // namespace common
