// What dump and debug share: the record they work on, its stored core opened, decompressed.
#include "cli/verbs/core_file.hpp"

#include "cli/verbs/select.hpp"
#include "common/base/escape.hpp"
#include "common/base/io.hpp"
#include "common/crash/zstd_stream.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

namespace cli {

// Opens the stored core of a record, or reports why there is none to give.
std::expected<common::UniqueFd, Exit> open_core(const Context& ctx, const Located& where,
                                                const common::Record& r) {
  if (r.core.removed) {
    return std::unexpected(report(Exit::failure, "The core of " + r.id +
                                                     " was removed by retention at " +
                                                     *r.core.removed + "; the record is kept"));
  }
  if (!r.core.present) {
    std::string why =
        "No core was stored for " + r.id + ": " + std::string(common::to_string(r.core.reason));
    if (!r.core.error.empty()) {
      why += " (" + common::printable(r.core.error) + ")";
    }
    return std::unexpected(report(Exit::failure, why));
  }
  if (ctx.remote) {
    return ctx.remote->download_core(where, r, ctx.opts.quiet);
  }
  // The path comes from the directory the record was found in, not from the record's text.
  const std::string rel = common::core_relpath(where.host_dir, where.exe_dir, where.id);
  const std::string path = ctx.store->root() + "/" + rel;
  auto fd = common::open_at(ctx.store->fd(), rel, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    const int err = fd.error().sys_errno;
    if (err == ENOENT) {
      return std::unexpected(
          report(Exit::failure, "The core file " + common::quoted(path) + " is missing"));
    }
    if (err == EACCES || err == EPERM) {
      return std::unexpected(
          report(Exit::denied,
                 "Permission denied reading " + common::quoted(path) +
                     (r.core.access == common::CoreAccess::root_only
                          ? " (this core is for root only: the process changed privileges or the "
                            "handler could not tell)"
                          : "")));
    }
    return std::unexpected(report(Exit::failure, "Failed to open " + common::quoted(path) + ": " +
                                                     std::strerror(err)));
  }
  if (r.core.truncated && !ctx.opts.quiet) {
    std::fprintf(stderr, "corectl: note: the core of %s is truncated (%s)\n", r.id.c_str(),
                 std::string(common::to_string(r.core.reason)).c_str());
  }
  return std::move(*fd);
}

// Sparse: a core's untouched pages stay holes in the file written (dump -o, a redirected
// stdout, the debugger's copy), so a 1 GiB core of a small process does not take 1 GiB.
Exit decompress(int in, int out, const std::string& id) {
  auto n = common::zstd_decompress(in, out, common::Sparse::yes);
  if (!n) {
    // zstd_decompress says "corrupted" for checksum and format failures.
    return report(Exit::failure, "Core of " + id + ": " + n.error().message);
  }
  return Exit::ok;
}

Exit write_core(int in, int out, const std::string& what, CoreForm form) {
  if (form == CoreForm::zstd) {
    return decompress(in, out, what);
  }
  std::vector<char> buf(1 << 16);
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return report(Exit::failure,
                    "Failed to read " + common::quoted(what) + ": " + std::strerror(errno));
    }
    if (n == 0) {
      return Exit::ok;
    }
    if (auto w = common::write_all(out, std::string_view(buf.data(), static_cast<size_t>(n))); !w) {
      return report(Exit::failure, "Failed to write the core: " + w.error().message);
    }
  }
}

std::expected<std::pair<Located, FullRecord>, Exit> find_checked(Context& ctx) {
  auto found = select_record(ctx);
  if (found &&
      (found->second.record.id != found->first.id || !common::is_record_id(found->first.id))) {
    return std::unexpected(report(
        Exit::failure, "The record " + common::quoted(found->first.id) + " names another id (" +
                           common::quoted(found->second.record.id) + "), not using it"));
  }
  return found;
}

} // namespace cli
