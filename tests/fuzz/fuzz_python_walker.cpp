// The Python stack walker over random memory behind a valid-looking _PyRuntime: the first
// byte picks the layout (3.11, 3.12 or 3.13's _Py_DebugOffsets), the rest fills a 64 KiB image
// of the process in which Py_Version, the type objects and _PyRuntime sit at fixed places.
// Whatever the bytes, the walk stays inside the image, ends, and keeps to its limits.
#include "common/crash/python/memory.hpp"
#include "common/crash/python/walker.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

using namespace crash::python;

namespace {

constexpr uint64_t k_base = 0x7f0000000000;
constexpr size_t k_image = 64 * 1024;
constexpr uint64_t k_version = 0x0;
constexpr uint64_t k_code_type = 0x40;
constexpr uint64_t k_unicode_type = 0x80;
constexpr uint64_t k_bytes_type = 0xc0;
constexpr uint64_t k_runtime = 0x100;

void put64(std::vector<std::byte>& image, uint64_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    image[at + static_cast<uint64_t>(i)] = static_cast<std::byte>(v >> (8 * i));
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const unsigned minor = 11 + data[0] % 3;
  std::vector<std::byte> image(k_image);
  std::memcpy(image.data() + k_runtime, data + 1, std::min(size - 1, k_image - k_runtime));
  put64(image, k_version, uint64_t{0x030000f0} | (uint64_t{minor} << 16));
  if (minor == 13) {
    std::memcpy(image.data() + k_runtime, "xdebugpy", 8);
    put64(image, k_runtime + 8, uint64_t{0x030d00f0});
    put64(image, k_runtime + 16, 0); // not free-threaded
  }
  ImageReader reader(k_base, image);
  PythonSymbols symbols;
  symbols.runtime = k_runtime;
  symbols.version = k_version;
  symbols.code_type = k_code_type;
  symbols.unicode_type = k_unicode_type;
  symbols.bytes_type = k_bytes_type;
  WalkLimits limits;
  limits.max_threads = 64;
  limits.max_frames = 64;
  limits.budget.max_reads = 5000;
  const PythonStacks stacks = walk_python(reader, symbols, k_base, "fuzz", limits);
  if (stacks.threads.size() > limits.max_threads || stacks.reads > limits.budget.max_reads) {
    __builtin_trap();
  }
  for (const PyThread& t : stacks.threads) {
    if (t.frames.size() > limits.max_frames) {
      __builtin_trap();
    }
  }
  return 0;
}
