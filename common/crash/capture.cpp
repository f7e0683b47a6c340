#include "common/crash/capture.hpp"

#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "common/crash/zstd_stream.hpp"

#include <zstd.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
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
// What another capture may write between our look at the free space and our write.
constexpr uint64_t k_concurrent_slack = 2 * k_read_size;
// Kept free for the record, written after the core.
constexpr uint64_t k_record_room = 256 << 10;
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

// Reads the input on a thread of its own into a few buffers, so that copying out of the pipe
// overlaps scanning, compressing and writing (the zstd CLI's asynchronous I/O does the same).
// The thread always ends when the reader is destroyed, whatever the consumer was doing (an
// exception in the scanner or the writer unwinds through here): the input is read
// non-blocking, and an empty pipe waited for in poll() together with an eventfd that the
// destructor signals (a thread blocked in read() cannot be woken, and a kernel that stalls
// mid-dump would hang the join). An exception on the thread (an allocation) does not
// std::terminate: it is handed to the consumer, which rethrows it from next().
class AsyncReader {
public:
  struct Chunk {
    std::span<const std::byte> data; // empty at the end of input
    std::optional<Error> error;      // the read that ended the input failed
    bool timed_out = false;          // the deadline passed first
  };

  explicit AsyncReader(int fd) : m_fd(fd), m_wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    for (auto& slot : m_slots) {
      slot.resize(k_read_size);
    }
    // Our end of the pipe only: the kernel's writing end is another open file.
    if (const int flags = ::fcntl(fd, F_GETFL); flags >= 0) {
      ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }
    m_thread = std::thread([this] { run(); });
  }
  AsyncReader(const AsyncReader&) = delete;
  AsyncReader& operator=(const AsyncReader&) = delete;
  ~AsyncReader() {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_changed.notify_all();
    if (m_wake) {
      const uint64_t one = 1;
      // Cannot fail short of a counter at its maximum, which one write per run never reaches.
      [[maybe_unused]] const ssize_t n = ::write(m_wake.get(), &one, sizeof one);
    }
    m_thread.join();
  }

  // The next chunk, in order, waiting until `deadline` at most; valid until the following call.
  Chunk next(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(m_mutex);
    if (m_holding) {
      m_holding = false;
      ++m_consumed;
      m_changed.notify_all();
    }
    if (!m_changed.wait_until(lock, deadline, [&] { return m_consumed < m_filled || m_done; })) {
      return Chunk{{}, std::nullopt, true};
    }
    if (m_consumed == m_filled) {
      if (m_failure) {
        std::rethrow_exception(m_failure);
      }
      return Chunk{{}, m_error, false};
    }
    m_holding = true;
    const size_t i = m_consumed % k_slots;
    return Chunk{std::span<const std::byte>(m_slots[i].data(), m_sizes[i]), std::nullopt, false};
  }

private:
  static constexpr size_t k_slots = 4;
  // Without an eventfd (out of descriptors), a stop is noticed within this time.
  static constexpr int k_poll_ms = 50;

  // Waits until the input is readable; false when asked to stop first.
  bool wait_readable() {
    for (;;) {
      {
        std::lock_guard lock(m_mutex);
        if (m_stop) {
          return false;
        }
      }
      std::array<pollfd, 2> p{pollfd{m_fd, POLLIN, 0}, pollfd{m_wake.get(), POLLIN, 0}};
      const int n = ::poll(p.data(), m_wake ? 2 : 1, m_wake ? -1 : k_poll_ms);
      if (n > 0 && p[1].revents != 0) {
        continue; // woken by the destructor: m_stop is set
      }
      if (n != 0 && !(n < 0 && errno == EINTR)) {
        return true; // readable, hung up, or an error that read() will report
      }
    }
  }

  void run() {
    try {
      read_loop();
    } catch (...) {
      std::lock_guard lock(m_mutex);
      m_failure = std::current_exception();
      m_done = true;
      m_changed.notify_all();
    }
  }

  void read_loop() {
    for (;;) {
      size_t i = 0;
      {
        std::unique_lock lock(m_mutex);
        m_changed.wait(lock, [&] { return m_filled - m_consumed < k_slots || m_stop; });
        if (m_stop) {
          return;
        }
        i = m_filled % k_slots;
      }
      std::optional<Expected<size_t>> n;
      for (;;) {
        n = read_some(m_fd, m_slots[i]);
        // Non-blocking: with data waiting (nearly always, the kernel writes ahead of us) the
        // read alone does it; poll() only when the pipe is empty, so that a stop is seen.
        if (*n || n->error().sys_errno != EAGAIN) {
          break;
        }
        if (!wait_readable()) {
          n.reset();
          break;
        }
      }
      std::lock_guard lock(m_mutex);
      if (!n || !*n || **n == 0) {
        if (n && !*n) {
          m_error = n->error();
        }
        m_done = true;
        m_changed.notify_all();
        return;
      }
      m_sizes[i] = **n;
      ++m_filled;
      m_changed.notify_all();
    }
  }

  int m_fd;
  std::array<std::vector<std::byte>, k_slots> m_slots;
  std::array<size_t, k_slots> m_sizes{};
  std::mutex m_mutex;
  std::condition_variable m_changed;
  uint64_t m_filled = 0;   // slots handed to the consumer so far
  uint64_t m_consumed = 0; // slots the consumer has given back
  bool m_holding = false;  // the consumer holds slot m_consumed
  bool m_done = false;
  bool m_stop = false;
  std::optional<Error> m_error;
  std::exception_ptr m_failure; // thrown on the thread, rethrown by next()
  UniqueFd m_wake;              // eventfd: the destructor wakes a poll() on the input
  std::thread m_thread;
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
  AsyncReader reader(in_fd);
  for (;;) {
    // Nothing more to store, and nothing the observer still needs (or max_raw read): stop
    // here. Draining a core we do not keep would hold the crashed process, a handler and a
    // capture slot for as long as the kernel cares to write (1 TiB of a sparse mapping).
    if (!storing && (!observer || !observer->wants_more() ||
                     result.received >= std::max(options.max_raw, options.min_observed))) {
      break;
    }
    const AsyncReader::Chunk next = reader.next(options.deadline);
    if (next.timed_out) {
      if (storing) {
        stop_storing(CaptureStop::deadline);
      } else if (result.stop == CaptureStop::none) {
        result.stop = CaptureStop::deadline;
      }
      break;
    }
    if (next.error) {
      result.read_failed = true;
      result.error = "Failed to read the core from stdin: " + next.error->message;
      result.sys_errno = next.error->sys_errno;
      break;
    }
    if (next.data.empty()) {
      result.complete = true;
      break;
    }
    const std::span<const std::byte> chunk = next.data;
    result.received += chunk.size();
    if (observer) {
      observer->observe(chunk);
    }
    if (!storing) {
      continue;
    }
    // Feed no more than could fit in max_stored even if incompressible, counting what zstd may
    // still hold: the output then never overshoots and never meets ENOSPC from our own writes.
    uint64_t out_room = options.max_stored - std::min(options.max_stored, result.stored_size);
    // max_stored was decided alone; other captures running now take from the same free space,
    // so look again before every chunk (one fstatvfs per MiB costs nothing measurable). Keep
    // room for the record, and for a chunk another writer may write between our look and ours.
    struct statvfs sv {};
    if (::fstatvfs(out_fd, &sv) == 0) {
      const uint64_t avail = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
      const uint64_t reserve = options.min_free + k_record_room + k_concurrent_slack;
      out_room = std::min(out_room, avail > reserve ? avail - reserve : 0);
    }
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
