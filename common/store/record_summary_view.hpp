// The one adapter from a RecordSummary (the fields read without a DOM) to what list views and
// the exporter use, with the full reader's type rules (record_from_json): a missing or null field
// takes its default, a field of another type makes the record malformed. corectl and the
// exporter both go through it, so a record one of them reads is a record the other reads too.
#pragma once

#include "common/base/error.hpp"
#include "common/store/record_summary.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace common {

struct RecordView {
  std::string id;   // never empty
  int64_t time = 0; // seconds since the epoch; 0 when the text is not a time
  std::string hostname;
  std::string executable;
  bool executable_deleted = false;
  int signal = 0; // never negative
  std::string signal_name;
  std::optional<int64_t> pid;
  std::optional<int64_t> uid;
  std::string comm;
  struct Core {
    bool present = false;
    std::string reason; // as written; parse_core_reason() tells known ones
    uint64_t size = 0;
    bool removed = false; // retention removed the stored core (core.removed is a time)
  } core;
  std::string signature; // crash.signature, "" when the record has none
  std::string site;      // the crash site in one phrase (see crash_site()), "" when unknown
};

// The view of a record's text (read_record_summary(), then the full reader's type rules), or why
// the record is malformed. `site` is the crash site in one short phrase: the frames signature v2
// grouped by ("f ← g ← h"), else the symbol ("name+0x10"), else the module's basename and offset
// (enough for addr2line), else "".
Expected<RecordView> read_record_view(std::string_view text);

} // namespace common
