#include "common/base/io.hpp"
#include "common/crash/capture.hpp"
#include "common/crash/zstd_stream.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstring>
#include <random>
#include <thread>

using namespace common;

namespace {

std::string mixed_data(size_t size) {
  std::mt19937_64 rng(42);
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    // Half compressible text, half random bytes, in 4 KiB pages.
    s[i] = (i / 4096) % 2 ? static_cast<char>(rng()) : static_cast<char>('a' + (i % 7));
  }
  return s;
}

UniqueFd open_rw(const std::filesystem::path& p) {
  return std::move(*open_at(AT_FDCWD, p, O_RDWR | O_CREAT | O_TRUNC, 0600));
}

std::string decompress(const std::filesystem::path& in, const std::filesystem::path& out) {
  auto ifd = open_at(AT_FDCWD, in, O_RDONLY);
  auto ofd = open_rw(out);
  auto n = zstd_decompress(ifd->get(), ofd.get());
  REQUIRE(n);
  return test::slurp(out);
}

struct Counter : StreamObserver {
  uint64_t bytes = 0;
  uint64_t wanted = UINT64_MAX; // reports wanting no more after this many bytes
  void observe(std::span<const std::byte> c) override { bytes += c.size(); }
  bool wants_more() const override { return bytes < wanted; }
};

// A pipe whose writer never ends: a thread keeps writing zeros until the reader closes it.
struct EndlessPipe {
  int read_end = -1;
  int write_end = -1;
  std::thread writer;
  EndlessPipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    read_end = fds[0];
    write_end = fds[1];
    writer = std::thread([fd = write_end] {
      static const std::array<char, 65536> zeros{};
      while (::write(fd, zeros.data(), zeros.size()) > 0) {
      }
    });
  }
  ~EndlessPipe() {
    ::close(read_end); // the writer gets EPIPE (SIGPIPE is ignored by the test main)
    writer.join();
    ::close(write_end);
  }
};

} // namespace

TEST_CASE("capture round-trips through zstd", "[zstd]") {
  test::TempDir dir;
  const std::string data = mixed_data(5 << 20);
  test::spit(dir.path() / "in", data);
  for (int workers : {0, 1}) {
    auto in = open_at(AT_FDCWD, dir.path() / "in", O_RDONLY);
    auto out = open_rw(dir.path() / "out.zst");
    Counter counter;
    CaptureOptions opt;
    opt.workers = workers;
    const auto r = capture_stream(in->get(), out.get(), opt, &counter);
    CHECK(r.stop == CaptureStop::none);
    CHECK(r.complete);
    CHECK(r.received == data.size());
    CHECK(r.stored_raw == data.size());
    CHECK(counter.bytes == data.size());
    CHECK(r.stored_size < data.size());
    CHECK(decompress(dir.path() / "out.zst", dir.path() / "out") == data);
  }
}

TEST_CASE("capture cuts at the limits and stops reading", "[zstd]") {
  test::TempDir dir;
  const std::string data = mixed_data(3 << 20);
  test::spit(dir.path() / "in", data);
  auto in = open_at(AT_FDCWD, dir.path() / "in", O_RDONLY);
  auto out = open_rw(dir.path() / "out.zst");
  Counter counter;
  CaptureOptions opt;
  opt.max_raw = 1000000;
  const auto r = capture_stream(in->get(), out.get(), opt, &counter);
  CHECK(r.stop == CaptureStop::max_raw);
  // The rest is never read: one read of 1 MiB held the cut, and nothing after it.
  CHECK(r.received == 1 << 20);
  CHECK_FALSE(r.complete);
  CHECK(counter.bytes == r.received);
  CHECK(r.stored_raw == 1000000);
  CHECK(decompress(dir.path() / "out.zst", dir.path() / "out") == data.substr(0, 1000000));

  SECTION("compressed-size limit") {
    auto in2 = open_at(AT_FDCWD, dir.path() / "in", O_RDONLY);
    auto out2 = open_rw(dir.path() / "out2.zst");
    CaptureOptions opt2;
    opt2.max_stored = 100000;
    opt2.workers = 0;
    const auto r2 = capture_stream(in2->get(), out2.get(), opt2, nullptr);
    CHECK(r2.stop == CaptureStop::max_stored);
    CHECK(r2.stored_raw < data.size());
    const std::string prefix = decompress(dir.path() / "out2.zst", dir.path() / "out2");
    CHECK(prefix == data.substr(0, prefix.size()));
  }
}

TEST_CASE("capture stops reading once nothing more is stored or wanted", "[zstd]") {
  test::TempDir dir;
  const std::string data = mixed_data(6 << 20);
  test::spit(dir.path() / "in", data);
  SECTION("not storing: read while the observer wants more") {
    auto in = open_at(AT_FDCWD, dir.path() / "in", O_RDONLY);
    Counter counter;
    counter.wanted = 2 << 20;
    const auto r = capture_stream(in->get(), -1, CaptureOptions{}, &counter);
    CHECK(r.received == 2 << 20);
    CHECK_FALSE(r.complete);
  }
  SECTION("not storing: never past max_raw, even for a greedy observer") {
    auto in = open_at(AT_FDCWD, dir.path() / "in", O_RDONLY);
    Counter counter;
    CaptureOptions opt;
    opt.max_raw = 3 << 20;
    const auto r = capture_stream(in->get(), -1, opt, &counter);
    CHECK(r.received == 3 << 20);
  }
  SECTION("cut at max_raw: an observer still wanting bytes reads up to max_raw only") {
    auto in = open_at(AT_FDCWD, dir.path() / "in", O_RDONLY);
    auto out = open_rw(dir.path() / "out.zst");
    Counter counter;
    CaptureOptions opt;
    opt.max_raw = (2 << 20) + 5;
    const auto r = capture_stream(in->get(), out.get(), opt, &counter);
    CHECK(r.stop == CaptureStop::max_raw);
    CHECK(r.received == 3 << 20);
  }
}

TEST_CASE("capture ends at the deadline on an endless input", "[zstd]") {
  std::signal(SIGPIPE, SIG_IGN);
  test::TempDir dir;
  EndlessPipe pipe;
  auto out = open_rw(dir.path() / "out.zst");
  CaptureOptions opt;
  const auto start = std::chrono::steady_clock::now();
  opt.deadline = start + std::chrono::milliseconds(500);
  Counter counter;
  const auto r = capture_stream(pipe.read_end, out.get(), opt, &counter);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.stop == CaptureStop::deadline);
  CHECK_FALSE(r.complete);
  CHECK(r.received > 0);
  CHECK(took < std::chrono::seconds(3));
  // What was kept is a valid frame of the prefix (all zeros).
  const std::string prefix = decompress(dir.path() / "out.zst", dir.path() / "out");
  CHECK(prefix.size() == r.stored_raw);
  CHECK(prefix.find_first_not_of('\0') == std::string::npos);
}

TEST_CASE("capture ends at the deadline when the input is silent", "[zstd]") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  const UniqueFd rd(fds[0]);
  const UniqueFd wr(fds[1]); // open, never written: read() would block forever
  CaptureOptions opt;
  const auto start = std::chrono::steady_clock::now();
  opt.deadline = start + std::chrono::milliseconds(300);
  Counter counter;
  const auto r = capture_stream(rd.get(), -1, opt, &counter);
  CHECK(r.stop == CaptureStop::deadline);
  CHECK(r.received == 0);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("corrupted and truncated zstd input is reported", "[zstd]") {
  test::TempDir dir;
  const std::string data = mixed_data(1 << 20);
  test::spit(dir.path() / "in", data);
  auto in = open_at(AT_FDCWD, dir.path() / "in", O_RDONLY);
  auto out = open_rw(dir.path() / "out.zst");
  capture_stream(in->get(), out.get(), CaptureOptions{}, nullptr);
  std::string z = test::slurp(dir.path() / "out.zst");
  SECTION("flipped byte") {
    z[z.size() / 2] = static_cast<char>(z[z.size() / 2] ^ 0x55);
  }
  SECTION("cut short") {
    z.resize(z.size() - 10);
  }
  SECTION("empty") {
    z.clear();
  }
  test::spit(dir.path() / "bad.zst", z);
  auto bad = open_at(AT_FDCWD, dir.path() / "bad.zst", O_RDONLY);
  auto sink = open_rw(dir.path() / "sink");
  auto r = zstd_decompress(bad->get(), sink.get());
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("corrupted") != std::string::npos);
}

TEST_CASE("decompressed cores keep their zero pages as holes", "[zstd]") {
  test::TempDir dir;
  // 64 pages: data, 30 zero pages, data, 31 zero pages up to the end (a trailing hole).
  std::string data(64 * 4096, '\0');
  std::memset(data.data(), 'x', 4096);
  std::memset(data.data() + 31 * 4096, 'y', 4096 + 17);
  const auto in = dir.path() / "in";
  test::spit(in, data);
  const auto compressed = dir.path() / "c.zst";
  {
    auto ifd = open_at(AT_FDCWD, in, O_RDONLY);
    auto ofd = open_rw(compressed);
    CHECK(capture_stream(ifd->get(), ofd.get(), CaptureOptions{}, nullptr).complete);
  }
  SECTION("a regular file") {
    const auto out = dir.path() / "sparse";
    auto ifd = open_at(AT_FDCWD, compressed, O_RDONLY);
    auto ofd = open_rw(out);
    auto n = zstd_decompress(ifd->get(), ofd.get(), Sparse::yes);
    REQUIRE(n);
    CHECK(*n == data.size());
    CHECK(test::slurp(out) == data);
    struct stat st {};
    REQUIRE(::stat(out.c_str(), &st) == 0);
    CHECK(static_cast<size_t>(st.st_size) == data.size());
    CHECK(static_cast<size_t>(st.st_blocks) * 512 <= 4 * 4096); // the data pages, not the holes
  }
  SECTION("dense unless asked, and always for an append-only file") {
    for (bool append : {false, true}) {
      const auto out = dir.path() / (append ? "append" : "dense");
      auto ifd = open_at(AT_FDCWD, compressed, O_RDONLY);
      auto ofd =
          open_at(AT_FDCWD, out, O_WRONLY | O_CREAT | O_TRUNC | (append ? O_APPEND : 0), 0600);
      REQUIRE(ofd);
      REQUIRE(zstd_decompress(ifd->get(), ofd->get(), append ? Sparse::yes : Sparse::no));
      CHECK(test::slurp(out) == data);
      struct stat st {};
      REQUIRE(::stat(out.c_str(), &st) == 0);
      CHECK(static_cast<size_t>(st.st_blocks) * 512 >= data.size());
    }
  }
}
