// Records stay small: every reader (the exporter, corectl) can load one whatever the crash
// looked like (hundreds of mapped files with 4 KiB paths, endless warnings).
#pragma once

#include "common/store/record.hpp"

#include <cstddef>

namespace common {

// Cuts `r` until its JSON text fits in `max` bytes: long strings first, then the tails of the
// warnings, mappings and frames, then whole optional sections. Each cut is described in
// r.handler.cut. Identity, signal and the core section are never cut.
void bound_record(Record& r, size_t max = k_record_max);

} // namespace common
