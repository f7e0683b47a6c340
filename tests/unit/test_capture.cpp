#include "common/base/fd.hpp"
#include "common/base/io.hpp"
#include "common/crash/capture.hpp"
#include "common/crash/zstd_stream.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <stdexcept>
#include <string>
#include <thread>

using namespace common;
using Clock = std::chrono::steady_clock;

namespace {

// A consumer that fails mid-stream, as the scanner or the writer could (an allocation).
struct FailingObserver : StreamObserver {
  uint64_t bytes = 0;
  uint64_t fail_after = 0;
  void observe(std::span<const std::byte> c) override {
    bytes += c.size();
    if (bytes > fail_after) {
      throw std::runtime_error("consumer failed");
    }
  }
};

// A kernel that stalls mid-dump: `size` bytes, then the pipe stays open and silent until the
// test ends. A reader blocked on it must still be stoppable.
struct StallingPipe {
  UniqueFd read_end;
  UniqueFd write_end;
  std::thread writer;
  std::atomic<bool> written{false};
  explicit StallingPipe(size_t size) {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
    // Room for all of it when it fits the default pipe-max-size, as the handler's pipe has.
    ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(std::min<size_t>(size, 1 << 20)));
    writer = std::thread([this, size] {
      static const std::array<char, 65536> bytes{};
      for (size_t done = 0; done < size;) {
        const ssize_t n =
            ::write(write_end.get(), bytes.data(), std::min(bytes.size(), size - done));
        if (n <= 0) {
          break;
        }
        done += static_cast<size_t>(n);
      }
      written = true;
    });
  }
  ~StallingPipe() {
    read_end.reset();
    writer.join();
  }
};

UniqueFd open_rw(const std::filesystem::path& p) {
  return std::move(*open_at(AT_FDCWD, p, O_RDWR | O_CREAT | O_TRUNC, 0600));
}

} // namespace

TEST_CASE("a consumer failing mid-stream ends the capture with its exception", "[capture]") {
  std::signal(SIGPIPE, SIG_IGN);
  test::TempDir dir;
  // 3 MiB arrive, then nothing more, with the pipe still open: the reader ends up waiting in
  // poll() for bytes that never come while the consumer throws.
  StallingPipe pipe(3 << 20);
  auto out = open_rw(dir.path() / "out.zst");
  FailingObserver observer;
  observer.fail_after = 2 << 20;
  CaptureOptions options;
  options.deadline = Clock::now() + std::chrono::seconds(60); // never what ends this test
  const auto start = Clock::now();
  CHECK_THROWS_WITH(capture_stream(pipe.read_end.get(), out.get(), options, &observer),
                    "consumer failed");
  CHECK(Clock::now() - start < std::chrono::seconds(5));
  CHECK(observer.bytes > observer.fail_after);
}

TEST_CASE("a consumer failing while the reader waits on a silent pipe", "[capture]") {
  // All of the input is read and the reader waits in poll() on an open, silent pipe when the
  // consumer fails on the last chunk: the reader's thread must be woken to be joined.
  StallingPipe pipe(512 << 10);
  while (!pipe.written) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  FailingObserver observer;
  observer.fail_after = (512 << 10) - 1;
  CaptureOptions options;
  options.deadline = Clock::now() + std::chrono::seconds(60);
  const auto start = Clock::now();
  CHECK_THROWS_AS(capture_stream(pipe.read_end.get(), -1, options, &observer), std::runtime_error);
  CHECK(Clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("a moved zstd writer keeps writing the same frame", "[capture][zstd]") {
  test::TempDir dir;
  auto fd = open_rw(dir.path() / "out.zst");
  auto created = ZstdWriter::create(fd.get(), 3, 0);
  REQUIRE(created);
  ZstdWriter first = std::move(*created);
  const std::string a(100000, 'a');
  REQUIRE(first.write(std::as_bytes(std::span(a))));
  ZstdWriter second = std::move(first);
  const std::string b(100000, 'b');
  REQUIRE(second.write(std::as_bytes(std::span(b))));
  REQUIRE(second.finish());
  CHECK(second.bytes_out() > 0);
  auto in = open_at(AT_FDCWD, dir.path() / "out.zst", O_RDONLY);
  auto plain = open_rw(dir.path() / "out");
  auto n = zstd_decompress(in->get(), plain.get());
  REQUIRE(n);
  CHECK(*n == 200000);
  CHECK(test::slurp(dir.path() / "out") == a + b);
}
