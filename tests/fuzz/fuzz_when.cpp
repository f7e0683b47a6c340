// libFuzzer target for corectl's time specifications (cli/catalog/when.cpp, built by run_fuzz_when.sh):
// any text, at any "now", must give an answer or none without reading outside the input and
// without signed overflow (UBSan aborts on either): spans are summed in int64 and added to now.
#include "cli/catalog/when.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(int32_t)) {
    return 0;
  }
  int32_t now = 0; // any time within 1901..2038, in the input's first bytes
  std::memcpy(&now, data, sizeof now);
  const std::string_view text(reinterpret_cast<const char*>(data) + sizeof now, size - sizeof now);
  (void)cli::parse_when(text, now);
  return 0;
}
