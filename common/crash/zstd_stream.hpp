// Streaming zstd compression into a file descriptor, and decompression back out.
#pragma once

#include "common/base/error.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace common {

// Frees a zstd context (and joins its worker threads); for std::unique_ptr.
struct ZstdFree {
  void operator()(ZSTD_CCtx_s* cctx) const;
  void operator()(ZSTD_DCtx_s* dctx) const;
};
using ZstdCCtxPtr = std::unique_ptr<ZSTD_CCtx_s, ZstdFree>;
using ZstdDCtxPtr = std::unique_ptr<ZSTD_DCtx_s, ZstdFree>;

// Compresses a stream of chunks into one zstd frame with a content checksum, written to `fd`.
// Memory is bounded by the window of `level`, whatever the input size.
class ZstdWriter {
public:
  // `workers` > 0 moves compression to zstd's own threads so reading input overlaps it.
  static Expected<ZstdWriter> create(int fd, int level, int workers);

  ZstdWriter(ZstdWriter&&) noexcept = default;
  ZstdWriter& operator=(ZstdWriter&&) noexcept = default;

  // Compresses `in`, writing whatever output is ready.
  Expected<void> write(std::span<const std::byte> in);
  // Ends the frame and writes the rest; after this the writer is spent.
  Expected<void> finish();
  // Compressed bytes written to the descriptor so far.
  uint64_t bytes_out() const { return m_bytes_out; }

private:
  ZstdWriter(int fd, ZstdCCtxPtr cctx);
  Expected<void> flush_out(size_t n);

  int m_fd;
  ZstdCCtxPtr m_cctx;
  std::vector<std::byte> m_out;
  uint64_t m_bytes_out = 0;
};

// Whether zstd_decompress may leave holes for zero blocks (a core's untouched pages) when it
// writes a regular file. Pipes, terminals and append-only files are always written densely.
enum class Sparse { no, yes };

// Decompresses every zstd frame read from `in_fd` into `out_fd`, verifying checksums.
// Returns the number of bytes written (holes included); a corrupt or truncated input is an error.
Expected<uint64_t> zstd_decompress(int in_fd, int out_fd, Sparse sparse = Sparse::no);

// Decompresses the zstd frames read from `in_fd` chunk by chunk into `sink`, which returns false
// to stop early (then the rest is not read, and not verified). Returns the bytes decompressed;
// a corrupt or truncated input, or the sink's error, is an error. Memory: zstd's window.
Expected<uint64_t>
zstd_decompress_each(int in_fd,
                     const std::function<Expected<bool>(std::span<const std::byte>)>& sink);

} // namespace common
