// libFuzzer target for corectl --remote's reader of the uploaders' index lines
// (cli/remote/index_line.cpp, built by run_fuzz_index_line.sh): whatever a bucket holds, a line
// is read or refused with a reason, never read outside the input, never an exception (a field of
// the wrong type once threw out of corectl), and what it accepts names only keys computed from
// its own safe parts.
#include "cli/remote/index_line.hpp"
#include "common/store/names.hpp"
#include "common/store/store.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  // The first byte picks the bucket's prefix: none, or one directory.
  const std::string prefix = (data[0] & 1) != 0 ? "fleet" : "";
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto line = cli::read_index_line(text, "node-x", prefix);
  if (line) {
    const cli::Crash& c = line->crash;
    if (!common::is_record_id(c.id) || !common::is_safe_component(c.host_dir) ||
        !common::is_safe_component(c.exe_dir) || (line->summary && c.signal < 0)) {
      std::abort();
    }
  } else if (line.error().empty()) {
    std::abort(); // a refusal always says why
  }
  return 0;
}
