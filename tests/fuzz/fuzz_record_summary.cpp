// libFuzzer target for the record summary reader (built by run_fuzz_record_summary.sh).
// Differential: whatever the input, read_record_summary() must accept exactly what nlohmann
// accepts as an object and report the same values; ASan catches any read outside the input,
// which libFuzzer hands over in a buffer of exactly its size.
#include "common/store/record_summary.hpp"
#include "tests/unit/record_summary_oracle.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  common::RecordSummary summary;
  std::string error;
  const bool ok = common::read_record_summary(text, summary, error);
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  const bool want = !j.is_discarded() && j.is_object();
  if (ok != want) {
    std::fprintf(stderr, "verdict differs: summary %s (%s), nlohmann %s\n",
                 ok ? "accepted" : "rejected", error.c_str(), want ? "accepted" : "rejected");
    std::abort();
  }
  if (ok && !(summary == test::summary_from(j))) {
    std::fprintf(stderr, "summary fields differ from nlohmann's parse\n");
    std::abort();
  }
  if (!ok && error.empty()) {
    std::fprintf(stderr, "rejected without a message\n");
    std::abort();
  }
  return 0;
}
