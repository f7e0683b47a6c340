// libFuzzer targets for every reader of files the store's owner can write: records, the ledger,
// corectl's summary cache, the usage file and the per-user view's links (built by
// run_fuzz_store.sh, one binary per reader, chosen with -DPC_FUZZ_READER=1..5). Root's corectl and
// the exporter read these files, so whatever the bytes, a reader returns a value or an error: no
// crash, no unbounded recursion, no read outside the input (ASan), no exception.
//
// Depth and size mutations: the first byte picks how the rest is presented, so that libFuzzer's
// byte-level mutations also reach the shapes that once crashed the readers:
//   0 as it is; 1 wrapped in N '[' … ']'; 2 nested N deep as {"crash": …}; 3 repeated N times;
// N comes from the next two bytes (up to 65535 levels, or a few MiB of text).
#include "cli/catalog/cache.hpp"
#include "common/store/ledger.hpp"
#include "common/store/record.hpp"
#include "common/store/record_summary.hpp"
#include "common/store/store.hpp"
#include "common/store/user_view.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

std::string shaped(const uint8_t* data, size_t size) {
  if (size < 3) {
    return std::string(reinterpret_cast<const char*>(data), size);
  }
  const unsigned mode = data[0] % 4;
  const size_t n = (size_t{data[1]} << 8) | data[2];
  const std::string_view rest(reinterpret_cast<const char*>(data + 3), size - 3);
  std::string out;
  switch (mode) {
  case 1:
    out.append(n, '[').append(rest).append(n, ']');
    break;
  case 2:
    for (size_t i = 0; i < n; ++i) {
      out += "{\"crash\":";
    }
    out.append(rest).append(n, '}');
    break;
  case 3:
    for (size_t i = 0; i < n && out.size() < (8u << 20); ++i) {
      out.append(rest);
    }
    break;
  default:
    out.assign(rest);
    break;
  }
  return out;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = shaped(data, size);
#if PC_FUZZ_READER == 1
  // Records: the full reader (bounds, DOM, typed fields) and the summary reader.
  if (auto r = common::parse_record(text)) {
    // What the reader accepted is written back and must read again.
    if (!common::parse_record(common::to_json_text(*r))) {
      fail("a record read back from its own text failed");
    }
  }
  (void)common::read_record_summary(text);
#elif PC_FUZZ_READER == 2
  if (auto l = common::parse_ledger(text)) {
    auto again = common::parse_ledger(common::ledger_to_text(*l));
    if (!again || again->counts != l->counts || again->pending != l->pending) {
      fail("a ledger read back from its own text differs");
    }
  }
#elif PC_FUZZ_READER == 3
  const auto cache = cli::parse_cache(text, "/var/lib/process-core");
  for (const auto& [key, dir] : cache) {
    if (dir.ids.size() < dir.crashes.size()) {
      fail("a cached directory has more crashes than ids");
    }
  }
#elif PC_FUZZ_READER == 4
  if (const auto u = common::parse_usage(text)) {
    const std::string again = std::to_string(u->bytes) + " " + std::to_string(u->walked) + "\n";
    const auto v = common::parse_usage(again);
    if (!v || v->bytes != u->bytes || v->walked != u->walked) {
      fail("usage text read back differs");
    }
  }
#elif PC_FUZZ_READER == 5
  // A per-user view link: "<name>\n<target>", both the store owner's to write.
  const size_t nl = text.find('\n');
  const std::string_view all(text);
  const std::string_view name = all.substr(0, nl);
  const std::string_view target = nl == std::string::npos ? std::string_view() : all.substr(nl + 1);
  if (auto e = common::parse_view_link(name, target)) {
    if (common::view_link_target(*e) != target || e->id != name) {
      fail("a view link read back differs");
    }
    if (e->host.find('/') != std::string::npos || e->exe.find('/') != std::string::npos ||
        e->host == ".." || e->exe == "..") {
      fail("a view link leaves its place in the store");
    }
  }
#else
#error "PC_FUZZ_READER must be 1 (record), 2 (ledger), 3 (cache), 4 (usage) or 5 (view)"
#endif
  return 0;
}
