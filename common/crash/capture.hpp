// The streaming core of the handler: stdin → observers and zstd → the core file, in one pass.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

namespace common {

// Sees every byte of the core in stream order (the ELF scanner), whether or not it is stored.
class StreamObserver {
public:
  virtual ~StreamObserver() = default;
  virtual void observe(std::span<const std::byte> chunk) = 0;
  // False when no later byte matters to the observer; then a capture that stores nothing more
  // stops reading.
  virtual bool wants_more() const { return true; }
};

struct CaptureOptions {
  int level = 1;                                              // zstd level
  int workers = 1;                                            // zstd worker threads
  uint64_t max_raw = std::numeric_limits<uint64_t>::max();    // core bytes stored at most
  uint64_t max_stored = std::numeric_limits<uint64_t>::max(); // compressed bytes at most
  // Free space to leave on the output's file system, checked before every chunk: max_stored
  // was decided alone, and other captures running at the same time take from the same space.
  uint64_t min_free = 0;
  // Once nothing more is stored, the observer may still be fed up to this many bytes even past
  // max_raw: a size cap below the notes (a few KiB to a few MiB) must not cost the crash site.
  uint64_t min_observed = 0;
  // When reading stops, whatever the core still holds: the stored prefix stays a valid frame.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

enum class CaptureStop {
  none,       // the whole input was stored
  max_raw,    // cut at max_raw (the size cap)
  max_stored, // cut when the compressed output reached max_stored (free space or quota)
  deadline,   // cut when the capture deadline passed
  failed,     // writing or compressing failed; the output is unusable
};

struct CaptureResult {
  uint64_t received = 0;    // all bytes read from the input
  uint64_t stored_raw = 0;  // input bytes that went into the output
  uint64_t stored_size = 0; // compressed bytes written
  CaptureStop stop = CaptureStop::none;
  std::string error;        // what failed (write, compress or read)
  int sys_errno = 0;        // errno of that failure, when it was a system call
  bool read_failed = false; // the input ended with a read error, not at EOF
  bool complete = false;    // the input was read to its end (else `received` is a prefix)
};

// Reads `in_fd`. Every byte read goes to `observer` (may be null); bytes up to the limits go
// through zstd to `out_fd` (skipped when out_fd < 0). Once nothing more is stored, reading goes
// on only while the observer wants more and neither `max_raw` nor `min_observed` bytes (the
// larger) have been read; it always ends
// at `deadline`. The caller closes `in_fd` then, which ends the kernel's dump: a huge or endless
// core costs bounded time. Memory is bounded by the read buffers plus zstd's window. An
// exception from `observer` (or from the reading thread) ends the capture: the reading thread
// is stopped and joined at once, even while the input stays open and silent, and the exception
// reaches the caller.
CaptureResult capture_stream(int in_fd, int out_fd, const CaptureOptions& options,
                             StreamObserver* observer);

} // namespace common
