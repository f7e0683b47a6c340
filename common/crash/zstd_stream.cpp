#include "common/crash/zstd_stream.hpp"

#include "common/base/io.hpp"

#include <zstd.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace common {

namespace {

// Writes decoded bytes, skipping over zero blocks with lseek() where that leaves a hole: a core
// is mostly pages the process never touched, which the kernel sends as real zeros (a 1 GiB
// core of a process that used 50 MiB needs 50 MiB on disk, not 1 GiB). Only a regular file
// without O_APPEND is written this way; the length is fixed at the end with ftruncate().
class SparseWriter {
public:
  SparseWriter(int fd, Sparse sparse) : m_fd(fd) {
    struct stat st {};
    const int flags = ::fcntl(fd, F_GETFL);
    m_sparse = sparse == Sparse::yes && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
               flags >= 0 && (flags & O_APPEND) == 0;
  }

  Expected<void> write(std::span<const std::byte> data) {
    if (!m_sparse) {
      return write_all(m_fd, data);
    }
    while (!data.empty()) {
      const size_t n = std::min(data.size(), k_block);
      const auto block = data.first(n);
      if (std::all_of(block.begin(), block.end(), [](std::byte b) { return b == std::byte{0}; })) {
        if (::lseek(m_fd, static_cast<off_t>(n), SEEK_CUR) < 0) {
          return fail_errno("Failed to seek in the output", errno);
        }
        m_pending_hole = true;
      } else {
        if (auto w = write_all(m_fd, block); !w) {
          return w;
        }
        m_pending_hole = false;
      }
      data = data.subspan(n);
    }
    return {};
  }

  // A hole at the end exists only once the file is that long.
  Expected<void> finish() {
    if (!m_sparse || !m_pending_hole) {
      return {};
    }
    const off_t end = ::lseek(m_fd, 0, SEEK_CUR);
    struct stat st {};
    if (end < 0 || ::fstat(m_fd, &st) != 0) {
      return fail_errno("Failed to find the output's length", errno);
    }
    if (st.st_size < end && ::ftruncate(m_fd, end) != 0) {
      return fail_errno("Failed to extend the output over its last hole", errno);
    }
    return {};
  }

private:
  static constexpr size_t k_block = 4096; // the file systems' block and the kernel's page
  int m_fd;
  bool m_sparse = false;
  bool m_pending_hole = false;
};

std::string zstd_message(size_t code) {
  return ZSTD_getErrorName(code);
}

} // namespace

void ZstdFree::operator()(ZSTD_CCtx_s* cctx) const {
  ZSTD_freeCCtx(cctx);
}

void ZstdFree::operator()(ZSTD_DCtx_s* dctx) const {
  ZSTD_freeDCtx(dctx);
}

ZstdWriter::ZstdWriter(int fd, ZstdCCtxPtr cctx)
    : m_fd(fd), m_cctx(std::move(cctx)), m_out(ZSTD_CStreamOutSize()) {}

Expected<ZstdWriter> ZstdWriter::create(int fd, int level, int workers) {
  ZstdCCtxPtr cctx(ZSTD_createCCtx());
  if (!cctx) {
    return fail("Failed to create a zstd context: out of memory");
  }
  auto set = [&](ZSTD_cParameter p, int v) -> Expected<void> {
    const size_t r = ZSTD_CCtx_setParameter(cctx.get(), p, v);
    if (ZSTD_isError(r)) {
      return fail("Failed to set zstd parameter " + std::to_string(static_cast<int>(p)) + " to " +
                  std::to_string(v) + ": " + zstd_message(r));
    }
    return {};
  };
  if (auto r = set(ZSTD_c_compressionLevel, level); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = set(ZSTD_c_checksumFlag, 1); !r) {
    return std::unexpected(r.error());
  }
  if (workers > 0) {
    // A libzstd built without threads refuses this; compressing inline is still correct.
    (void)set(ZSTD_c_nbWorkers, workers);
  }
  return ZstdWriter(fd, std::move(cctx));
}

Expected<void> ZstdWriter::flush_out(size_t n) {
  if (n == 0) {
    return {};
  }
  if (auto r = write_all(m_fd, std::span(m_out.data(), n)); !r) {
    return r;
  }
  m_bytes_out += n;
  return {};
}

Expected<void> ZstdWriter::write(std::span<const std::byte> in) {
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  // The loop of zstd's streaming example: continue until all input is consumed.
  while (input.pos < input.size) {
    ZSTD_outBuffer output{m_out.data(), m_out.size(), 0};
    const size_t r = ZSTD_compressStream2(m_cctx.get(), &output, &input, ZSTD_e_continue);
    if (ZSTD_isError(r)) {
      return fail(std::string("zstd compression failed: ") + zstd_message(r));
    }
    if (auto w = flush_out(output.pos); !w) {
      return w;
    }
  }
  return {};
}

Expected<void> ZstdWriter::finish() {
  ZSTD_inBuffer input{nullptr, 0, 0};
  for (;;) {
    ZSTD_outBuffer output{m_out.data(), m_out.size(), 0};
    const size_t remaining = ZSTD_compressStream2(m_cctx.get(), &output, &input, ZSTD_e_end);
    if (ZSTD_isError(remaining)) {
      return fail(std::string("zstd compression failed: ") + zstd_message(remaining));
    }
    if (auto w = flush_out(output.pos); !w) {
      return w;
    }
    if (remaining == 0) {
      return {};
    }
  }
}

Expected<uint64_t> zstd_decompress(int in_fd, int out_fd, Sparse sparse) {
  SparseWriter writer(out_fd, sparse);
  auto total = zstd_decompress_each(in_fd, [&](std::span<const std::byte> chunk) -> Expected<bool> {
    if (auto w = writer.write(chunk); !w) {
      return std::unexpected(w.error());
    }
    return true;
  });
  if (!total) {
    return total;
  }
  if (auto f = writer.finish(); !f) {
    return std::unexpected(f.error());
  }
  return total;
}

Expected<uint64_t>
zstd_decompress_each(int in_fd,
                     const std::function<Expected<bool>(std::span<const std::byte>)>& sink) {
  ZstdDCtxPtr dctx(ZSTD_createDCtx());
  if (!dctx) {
    return fail("Failed to create a zstd context: out of memory");
  }
  std::vector<std::byte> in(ZSTD_DStreamInSize());
  std::vector<std::byte> out(ZSTD_DStreamOutSize());
  uint64_t total = 0;
  size_t last = 0; // 0 once a frame is complete and its checksum verified
  bool any_input = false;
  for (;;) {
    auto n = read_some(in_fd, in);
    if (!n) {
      return std::unexpected(n.error());
    }
    if (*n == 0) {
      break;
    }
    any_input = true;
    ZSTD_inBuffer input{in.data(), *n, 0};
    // A full output buffer may leave decoded data inside zstd: keep draining until it is not.
    bool out_full = false;
    while (input.pos < input.size || out_full) {
      ZSTD_outBuffer output{out.data(), out.size(), 0};
      last = ZSTD_decompressStream(dctx.get(), &output, &input);
      if (ZSTD_isError(last)) {
        return fail(std::string("corrupted core file: ") + zstd_message(last));
      }
      total += output.pos;
      auto more = sink(std::span(out.data(), output.pos));
      if (!more) {
        return std::unexpected(more.error());
      }
      if (!*more) {
        return total;
      }
      // Once a frame is complete (last == 0) nothing is held back; another call would start
      // reading the next frame header and report that it wants more input.
      out_full = output.pos == output.size && last != 0;
    }
  }
  if (!any_input) {
    return fail("corrupted core file: empty");
  }
  if (last != 0) {
    return fail("corrupted core file: truncated zstd frame");
  }
  return total;
}

} // namespace common
