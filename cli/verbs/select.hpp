// Which crashes a verb works on: the filter of the options and matches, the catalog it selects
// (list, groups, info, vacuum), or one record by id or as the newest match (dump, debug).
#pragma once

#include "cli/catalog/catalog.hpp"
#include "cli/context.hpp"
#include "cli/exit.hpp"
#include "cli/output/render.hpp"

#include <algorithm>
#include <cstddef>
#include <expected>
#include <string>
#include <utility>
#include <vector>

namespace cli {

// The filter of the options and matches (list, info, groups, dump, debug, vacuum); a value that
// does not parse is the message of a usage error.
std::expected<Filter, std::string> make_filter(const Options& o);

// Loads what the filter selects and reports unreadable parts: a user who may not read the store
// gets an error, not an empty list; partial access is a warning beside the partial list.
std::expected<Catalog, Exit> load_selected(Context& ctx);

// "No crashes found." on stderr (not with --quiet); Exit::no_match.
Exit nothing_matched(const Options& o);

// True when `filter` selects `c`, units included (those need the full record: a bounded read).
bool selects(const common::Store& store, const Filter& filter, const Crash& c);

// The record of a crash where the invocation reads: the store, or the bucket with --remote.
common::Expected<FullRecord> read_record(const Context& ctx, const Located& where);

// The record behind an id or unique prefix, or the exit status after reporting why not.
std::expected<std::pair<Located, FullRecord>, Exit> find_record(Context& ctx,
                                                                const std::string& prefix);

// The record dump and debug work on: the one id given, else the newest crash the matches and
// filters select (the newest of the store without any).
std::expected<std::pair<Located, FullRecord>, Exit> select_record(Context& ctx);

// An id word as given, without ID= (match.hpp says which words are ids).
std::string id_of(const std::string& word);

// --no-legend (or --quiet) as the renderer takes it.
inline Legend legend_of(const Options& o) {
  return o.no_legend || o.quiet ? Legend::hide : Legend::show;
}

// -n keeps the newest N; -r puts the newest first. Works on anything ordered oldest first.
template <typename T>
void limit_and_order(std::vector<T>& items, const Options& o) {
  if (o.limit && items.size() > *o.limit) {
    items.erase(items.begin(), items.end() - static_cast<std::ptrdiff_t>(*o.limit));
  }
  if (o.reverse) {
    std::reverse(items.begin(), items.end());
  }
}

} // namespace cli
