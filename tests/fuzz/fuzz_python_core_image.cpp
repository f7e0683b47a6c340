// The core image of a stored core over random input: the bytes are a core's stream, fed in
// chunks whose sizes come from the first bytes, then every segment read through the reader
// (a page at each segment's start, middle and end). Whatever the bytes, the collector keeps to
// its bound, ends, and the reader reads only inside what it kept.
#include "common/crash/python/core_image.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

using namespace crash::python;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const size_t step = 1 + (data[0] % 97) * 13;
  const std::span<const std::byte> core(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  CoreImageCollector collector(1 << 20);
  for (size_t at = 0; at < core.size(); at += step) {
    collector.observe(core.subspan(at, std::min(step, core.size() - at)));
  }
  uint64_t kept = 0;
  for (const CoreSegment& s : collector.segments()) {
    kept += s.bytes.size();
    if (s.bytes.size() > s.filesz) {
      __builtin_trap();
    }
  }
  if (kept > (1 << 20)) {
    __builtin_trap();
  }
  std::vector<CoreSegment> segments = collector.take_segments();
  std::vector<uint64_t> probes;
  for (const CoreSegment& s : segments) {
    probes.push_back(s.vaddr);
    probes.push_back(s.vaddr + s.memsz / 2);
    probes.push_back(s.vaddr + s.memsz - 8);
  }
  CoreImageReader reader(std::move(segments), {});
  std::array<std::byte, 8> out{};
  for (uint64_t p : probes) {
    reader.start(Budget{});
    (void)reader.read(p, out);
  }
  return 0;
}
