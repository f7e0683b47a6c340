// What dump and debug share: the record they work on and its stored core.
#pragma once

#include "cli/catalog/catalog.hpp"
#include "cli/context.hpp"
#include "cli/exit.hpp"
#include "common/base/fd.hpp"

#include <expected>
#include <string>
#include <utility>

namespace cli {

// The record to work on (select_record()), checked to be the one its file name says: the id is
// used in messages and must not be able to pose as another record (or as a path).
std::expected<std::pair<Located, FullRecord>, Exit> find_checked(Context& ctx);

// Opens the stored core of a record, or reports why there is none to give.
std::expected<common::UniqueFd, Exit> open_core(const Context& ctx, const Located& where,
                                                const common::Record& r);

// Decompresses the core open as `in` to `out`, checksum verified, sparse; reports a failure.
Exit decompress(int in, int out, const std::string& id);

// How a core to write is held: a stored one (zstd), or a core given with --file (as it is).
enum class CoreForm { zstd, plain };

// The core open as `in` to `out`: decompressed (zstd), or copied (plain); `what` names it in
// messages (an id, or the path given).
Exit write_core(int in, int out, const std::string& what, CoreForm form);

} // namespace cli
