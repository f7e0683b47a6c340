// libFuzzer target for the record summary reader (built by run_fuzz_record_summary.sh).
// Differential: whatever the input, read_record_summary() must accept exactly what the full
// reader's parse_record_json() accepts as an object (the same bounds, then nlohmann) and report
// the same values; ASan catches any read outside the input, which libFuzzer hands over in a
// buffer of exactly its size.
#include "common/store/record_summary.hpp"
#include "tests/unit/record_summary_oracle.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto summary = common::read_record_summary(text);
  const auto full = test::full_reader_object(text);
  if (summary.has_value() != full.has_value()) {
    std::fprintf(stderr, "verdict differs: summary %s (%s), full reader %s\n",
                 summary ? "accepted" : "rejected", summary ? "" : summary.error().message.c_str(),
                 full ? "accepted" : "rejected");
    std::abort();
  }
  if (summary && !(*summary == test::summary_from(*full))) {
    std::fprintf(stderr, "summary fields differ from the full reader's parse\n");
    std::abort();
  }
  if (!summary && summary.error().message.empty()) {
    std::fprintf(stderr, "rejected without a message\n");
    std::abort();
  }
  return 0;
}
