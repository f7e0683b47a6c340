// The record's size bound and each section's share of it (docs/record.md). A section's share is
// what its producer may count on: it cuts its own content to fit (as the analysis child cuts
// threads and frames), and a new section takes its share from `k_share_reserved`.
#pragma once

#include <cstddef>

namespace common {

// The largest record the handler writes (its JSON text; common/store/record_bound cuts to it).
inline constexpr size_t k_record_max = 256 << 10;
// The one limit of every reader (corectl, vacuum, the exporter): the handler's bound plus a
// margin for what is added once a record is written (vacuum's `core.removed`). A larger file is
// not read: it is listed and counted as unreadable, from its place in the store.
inline constexpr size_t k_max_record_bytes = k_record_max + (64 << 10);

namespace record {

// Identity, `core`, `store` and `handler`: three 4 KiB strings, 64 warnings of 1 KiB, the cuts.
inline constexpr size_t k_share_identity = 80 << 10;
// `crash`: the site, the symbol, the original fault and every thread's frames.
inline constexpr size_t k_share_crash = 96 << 10;
// `mappings`: up to 1024 files with their build-ids and findings.
inline constexpr size_t k_share_mappings = 48 << 10;
// `container` and `node`.
inline constexpr size_t k_share_host = 8 << 10;
// Held for sections still to come (interpreter stacks, packages, runtime reports, upload state).
inline constexpr size_t k_share_reserved = 24 << 10;

static_assert(k_share_identity + k_share_crash + k_share_mappings + k_share_host +
                      k_share_reserved ==
                  k_record_max,
              "the sections' shares make up the record bound");

} // namespace record

} // namespace common
