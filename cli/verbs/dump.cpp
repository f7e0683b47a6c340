// dump: the original core of a crash, decompressed and checked.
#include "cli/verbs/core_file.hpp"
#include "cli/verbs/loose_core.hpp"
#include "cli/verbs/verbs.hpp"
#include "common/base/atomic_file.hpp"
#include "common/base/io.hpp"
#include "common/base/path.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <string>

namespace cli {

namespace {

// The core open as `in` to -o FILE, else standard output.
Exit write_output(const Options& o, int in, const std::string& what, CoreForm form) {
  if (!o.output || *o.output == "-") {
    return write_core(in, STDOUT_FILENO, what, form);
  }
  // Written under a temporary name and renamed when complete and verified: a corrupted core
  // leaves no half-written FILE that looks like a core. 0600: a core holds process memory.
  const std::string& out = *o.output;
  const std::string dir(common::dir_name(out));
  const std::string name(common::base_name(out));
  auto dfd = common::open_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
  if (!dfd) {
    return report(Exit::failure, dfd.error().message);
  }
  auto file = common::AtomicFile::create(dfd->get(), name, 0600);
  if (!file) {
    return report(Exit::failure, file.error().message);
  }
  if (auto e = write_core(in, file->fd(), what, form); e != Exit::ok) {
    return e;
  }
  if (auto c = file->commit(common::Replace::yes); !c) {
    return report(Exit::failure, c.error().message);
  }
  return Exit::ok;
}

Exit refuse_terminal() {
  return report(Exit::usage,
                "Refusing to write a binary core to a terminal: use -o FILE or redirect");
}

} // namespace

Exit cmd_dump(Context& ctx) {
  if (ctx.opts.file) {
    // A core not in the store: checked to be an ELF core, then copied as it is.
    if (!ctx.opts.output && ::isatty(STDOUT_FILENO) == 1) {
      return refuse_terminal();
    }
    auto core = open_loose_core(*ctx.opts.file, false);
    if (!core) {
      return core.error();
    }
    return write_output(ctx.opts, core->fd.get(), core->path, CoreForm::plain);
  }
  auto found = find_checked(ctx);
  if (!found) {
    return found.error();
  }
  const auto& [where, full] = *found;
  if (!ctx.opts.output && ::isatty(STDOUT_FILENO) == 1) {
    return refuse_terminal();
  }
  auto in = open_core(ctx, where, full.record);
  if (!in) {
    return in.error();
  }
  return write_output(ctx.opts, in->get(), full.record.id, CoreForm::zstd);
}

} // namespace cli
