#include "exporter/record_row.hpp"

#include "common/base/io.hpp"
#include "common/store/names.hpp"
#include "common/store/record.hpp"
#include "common/store/record_summary_view.hpp"
#include "common/store/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <span>

namespace exporter {

namespace {

using common::index::Form;
using common::index::IndexedRecord;

// The site corectl lists a record by its place under.
constexpr const char* k_unreadable_site = "(unreadable record)";

// The row of a record that is not a valid one (or too large to read): listed and counted by its
// place, as corectl's catalog lists it.
IndexedRecord by_place(const std::string& host, const std::string& exe, const std::string& id,
                       const struct stat& st) {
  IndexedRecord r;
  r.id = id;
  r.hostname = host;
  // The component of "/usr/bin/app" is "usr!bin!app": the same label as its readable records
  // when the name needed no hash.
  r.executable = "/" + common::decode_exe(exe);
  r.signal_name = "unknown";
  r.site = k_unreadable_site;
  r.core_reason = std::string(common::to_string(common::CoreReason::error));
  r.time = static_cast<int64_t>(st.st_mtime);
  r.form = Form::by_place;
  return r;
}

} // namespace

uint64_t allocated_bytes(const struct stat& st) {
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

common::Expected<IndexedRecord> read_record_row(int exe_dirfd, const std::string& host,
                                                const std::string& exe, const std::string& id) {
  const std::string name = id + std::string(common::k_record_suffix);
  // O_NONBLOCK: a FIFO under a record's name must not hang the exporter; O_NOFOLLOW: a link
  // planted there must not lead it (and its counts) outside the store.
  auto fd = common::open_at(exe_dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  IndexedRecord row;
  if (!fd) {
    if (fd.error().sys_errno != ELOOP) {
      return std::unexpected(fd.error());
    }
    row.id = id;
    row.listed = false;
    row.form = Form::link;
    return row;
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return common::fail_errno("Failed to stat " + common::quoted(name), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    row.id = id;
    row.listed = false;
    row.form = Form::not_regular;
    return row;
  }
  std::optional<common::RecordView> view;
  if (static_cast<uint64_t>(st.st_size) <= common::k_max_record_bytes) {
    std::string text(static_cast<size_t>(st.st_size), '\0');
    auto got = common::read_full(fd->get(), std::as_writable_bytes(std::span(text)));
    if (!got) {
      return std::unexpected(got.error());
    }
    text.resize(*got);
    if (auto v = common::read_record_view(text)) {
      view = std::move(*v);
    }
  }
  // The file name is the identity the store and the ledger use: a record that claims another
  // id, or that cannot be read at all, is counted by its name and place instead.
  if (!view || view->id != id) {
    row = by_place(host, exe, id, st);
  } else {
    row.id = std::move(view->id);
    row.time = view->time;
    row.hostname = std::move(view->hostname);
    row.executable = std::move(view->executable);
    row.executable_deleted = view->executable_deleted;
    row.signal = view->signal;
    row.signal_name = std::move(view->signal_name);
    row.pid = view->pid;
    row.uid = view->uid;
    row.comm = std::move(view->comm);
    row.core_present = view->core.present;
    // As corectl keeps it: a reason this build does not know is an error.
    row.core_reason = std::string(common::to_string(
        common::parse_core_reason(view->core.reason).value_or(common::CoreReason::error)));
    row.core_size = view->core.size;
    row.core_removed = view->core.removed;
    row.signature = std::move(view->signature);
    row.site = std::move(view->site);
    row.form = Form::parsed;
  }
  row.record_bytes = allocated_bytes(st);
  struct stat core {};
  const std::string core_name = id + std::string(common::k_core_suffix);
  if (::fstatat(exe_dirfd, core_name.c_str(), &core, AT_SYMLINK_NOFOLLOW) == 0) {
    row.core_file = true;
    row.core_bytes = S_ISREG(core.st_mode) ? allocated_bytes(core) : 0;
  }
  return row;
}

common::SeriesKey series_of_row(const IndexedRecord& row, const std::string& host,
                                const std::string& exe) {
  if (row.form == Form::parsed) {
    common::Record r; // series_of() decides the labels, as for every other reader
    r.hostname = row.hostname;
    r.executable = row.executable;
    r.signal = row.signal;
    r.signal_name = row.signal_name;
    r.core.present = row.core_present;
    return common::series_of(r);
  }
  common::SeriesKey key;
  key.hostname = host;
  key.executable = "/" + common::decode_exe(exe);
  key.signal = "unknown";
  key.core_present = row.core_bytes > 0;
  return key;
}

} // namespace exporter
