// libFuzzer target for the perf map parser (common/crash/perf_map.cpp, built by
// run_fuzz_perf_map.sh): the crasher writes the map, so any bytes, with any addresses to name,
// must give names only from within the input and bounded ones, and JIT names of any form must
// reduce to a signature part without reading outside them.
#include "common/crash/perf_map.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  // The first byte: how many 8-byte addresses follow; the rest is the map.
  const size_t count = std::min<size_t>(data[0] % 16, (size - 1) / 8);
  std::vector<uint64_t> addresses(count);
  if (count > 0) {
    std::memcpy(addresses.data(), data + 1, count * 8);
  }
  const std::string_view text(reinterpret_cast<const char*>(data) + 1 + count * 8,
                              size - 1 - count * 8);
  const auto names = common::perf_map_names(text, addresses);
  for (const auto& [address, name] : names) {
    if (name.name.size() > common::k_perf_map_name || name.name.empty() ||
        text.find(name.name) == std::string_view::npos || address < name.start) {
      std::abort();
    }
    (void)common::jit_signature_name(name.name);
  }
  (void)common::jit_signature_name(text.substr(0, 4096));
  return 0;
}
