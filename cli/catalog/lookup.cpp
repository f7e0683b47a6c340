// Records by id prefix, and a record read whole (catalog.hpp).
#include "cli/catalog/load.hpp"
#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/store/names.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

namespace cli {

namespace {

using Found = std::expected<std::vector<Located>, LookupFailure>;

// The records of a store we may list whose id starts with `want`.
Found find_in_store(const common::Store& store, const std::string& want, std::string_view prefix) {
  std::vector<Located> found;
  // Directories we may not read: "not there" must be told from "not allowed".
  size_t denied = 0;
  std::string denied_what;
  common::Store::WalkEvents events;
  events.failed = [&](std::string_view rel, const common::Error& e) {
    if (e.sys_errno == EACCES || e.sys_errno == EPERM) {
      ++denied;
      denied_what = rel;
    }
  };
  auto walked = store.for_each_record(
      [&](const common::StoreEntry& e) {
        if (e.id.starts_with(want) && common::is_record_id(e.id)) {
          found.push_back({e.host, e.exe, e.id});
        }
      },
      events);
  if (!walked) {
    const int err = walked.error().sys_errno;
    return std::unexpected(
        LookupFailure{err == EACCES || err == EPERM ? LookupError::denied : LookupError::not_found,
                      "No record " + std::string(prefix) + " found: " + walked.error().message,
                      {}});
  }
  if (found.empty()) {
    if (denied > 0) {
      return std::unexpected(LookupFailure{
          LookupError::denied,
          "No record " + std::string(prefix) + " among the records readable to you; " +
              std::to_string(denied) + " store director" + (denied == 1 ? "y is" : "ies are") +
              " not readable (e.g. " + common::quoted(denied_what) + ": Permission denied)",
          {}});
    }
    return std::unexpected(
        LookupFailure{LookupError::not_found, "No record with id " + std::string(prefix), {}});
  }
  return found;
}

// The records of the calling user's view whose id starts with `want` (and that still exist).
// Anything else is not theirs to see, so it is "denied", never "not found".
Found find_in_view(const common::Store& store, const std::string& want, std::string_view prefix) {
  std::vector<Located> found;
  LoadProblems problems;
  for (auto& where : view_places(store, problems)) {
    struct stat st {};
    const std::string rel = common::record_relpath(where.host_dir, where.exe_dir, where.id);
    if (where.id.starts_with(want) &&
        ::fstatat(store.fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      found.push_back(std::move(where));
    }
  }
  if (found.empty()) {
    return std::unexpected(
        LookupFailure{LookupError::denied,
                      "No record " + std::string(prefix) + " among the records readable to you",
                      {}});
  }
  return found;
}

} // namespace

std::expected<std::string, LookupFailure> id_prefix(std::string_view prefix) {
  std::string want;
  for (char ch : prefix) {
    want += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  if (want.size() > 16 || !common::is_hex(want)) {
    return std::unexpected(LookupFailure{LookupError::bad_prefix,
                                         "'" + std::string(prefix) +
                                             "' is not a record id (ids are 16 hex characters)",
                                         {}});
  }
  return want;
}

std::expected<Located, LookupFailure> resolve_id(const common::Store& store,
                                                 std::string_view prefix) {
  auto checked = id_prefix(prefix);
  if (!checked) {
    return std::unexpected(checked.error());
  }
  const std::string& want = *checked;
  Found found =
      root_listable(store) ? find_in_store(store, want, prefix) : find_in_view(store, want, prefix);
  if (!found) {
    return std::unexpected(std::move(found.error()));
  }
  if (found->size() > 1) {
    std::sort(found->begin(), found->end(),
              [](const Located& a, const Located& b) { return a.id < b.id; });
    return std::unexpected(LookupFailure{LookupError::ambiguous,
                                         "Id prefix " + std::string(prefix) + " is ambiguous",
                                         std::move(*found)});
  }
  return found->front();
}

common::Expected<FullRecord> read_record(const common::Store& store, const Located& where) {
  const std::string rel = common::record_relpath(where.host_dir, where.exe_dir, where.id);
  auto text = common::read_file(store.fd(), rel, common::k_max_record_bytes);
  if (!text) {
    const std::string what = "Failed to read record " + common::quoted(store.root() + "/" + rel);
    if (text.error().sys_errno == 0) { // the one failure without errno: the size limit
      return common::fail(what + ": larger than " + std::to_string(common::k_max_record_bytes) +
                          " bytes");
    }
    return common::fail_errno(what, text.error().sys_errno);
  }
  return parse_full_record(*text, where, store.root() + "/" + rel);
}

common::Expected<FullRecord> parse_full_record(std::string_view text, const Located& where,
                                               const std::string& place) {
  FullRecord out;
  auto parsed = common::parse_record_json(text);
  if (!parsed) {
    return common::fail("Malformed record " + common::quoted(place) + ": " +
                        parsed.error().message);
  }
  out.json = std::move(*parsed);
  auto rec = common::record_from_json(out.json);
  if (!rec) {
    return common::fail("Malformed record " + common::quoted(place) + ": " + rec.error().message);
  }
  // The id and the directories come from where the file was found: the store's owner writes
  // the text, and an id that differs from the file name would point root at another crash.
  if (rec->id != where.id) {
    return common::fail("Malformed record " + common::quoted(place) + ": it names another id (" +
                        common::quoted(rec->id) + ")");
  }
  rec->store_host = where.host_dir;
  rec->store_exe = where.exe_dir;
  out.record = std::move(*rec);
  return out;
}

} // namespace cli
