// One record file read the one way the exporter reads it, as the index row it leaves: the row's
// form says how it is counted, its sizes what it weighs. The file scan and the start-up from the
// index both count through count_row(), so the two give the same counts by construction.
#pragma once

#include "common/base/error.hpp"
#include "common/index/index.hpp"
#include "common/store/ledger.hpp"

#include <sys/stat.h>

#include <string>

namespace exporter {

// Reads `<id>.json` in the open executable directory `exe_dirfd` (components `host`, `exe`) into
// its row, filled as corectl's catalog fills it (so that corectl reads the same crash from the
// index as from the file). An error when the file could not be read (its errno kept: ENOENT when
// it is gone); a record that is not valid, too large, a link or no regular file is a row whose
// form says so, never an error.
common::Expected<common::index::IndexedRecord> read_record_row(int exe_dirfd,
                                                               const std::string& host,
                                                               const std::string& exe,
                                                               const std::string& id);

// The series a counted row is counted in: its labels when it was read, the labels its place in
// the store gives (host and executable directories, signal "unknown") when counted by place.
common::SeriesKey series_of_row(const common::index::IndexedRecord& row, const std::string& host,
                                const std::string& exe);

// The allocated bytes of a stat()ed file (what the store's usage counts).
uint64_t allocated_bytes(const struct stat& st);

} // namespace exporter
