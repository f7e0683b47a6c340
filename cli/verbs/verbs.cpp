#include "cli/verbs/verbs.hpp"

#include "cli/context.hpp"
#include "cli/verbs/install.hpp"

#include <algorithm>
#include <array>

namespace cli {

namespace {

constexpr std::array k_verbs = {
    Verb{"list", cmd_list, NeedsStore::yes, UsesPager::yes, Remote::yes,
         "crashes, one per line, newest last"},
    Verb{"info", cmd_info, NeedsStore::yes, UsesPager::yes, Remote::yes,
         "everything the matching records say (default: the newest)"},
    Verb{"dump", cmd_dump, NeedsStore::yes, UsesPager::no, Remote::yes,
         "the original core of the newest match (decompressed, checksum verified)"},
    Verb{"debug", cmd_debug, NeedsStore::yes, UsesPager::no, Remote::yes,
         "run a debugger (gdb) on the executable and the core of the newest match"},
    Verb{"groups", cmd_groups, NeedsStore::yes, UsesPager::yes, Remote::yes,
         "crashes grouped by signature"},
    Verb{"resolve", cmd_resolve, NeedsStore::yes, UsesPager::no, Remote::no,
         "mark a crash group fixed (--in PACKAGE=VERSION or a build-id); a later crash of a "
         "version not older regresses it"},
    Verb{"unresolve", cmd_unresolve, NeedsStore::yes, UsesPager::no, Remote::no,
         "forget a group's resolve mark"},
    Verb{"vacuum", cmd_vacuum, NeedsStore::yes, UsesPager::no, Remote::no,
         "apply the retention policy now; with filters or matches, remove the cores of the "
         "crashes they select (records kept)"},
    Verb{"remove", cmd_remove, NeedsStore::yes, UsesPager::no, Remote::no,
         "remove crashes (core and record; counters keep them): users their own, root any"},
    // install/uninstall change the kernel, not the store.
    Verb{"install", cmd_install, NeedsStore::no, UsesPager::no, Remote::no,
         "point kernel.core_pattern at the handler (root)"},
    Verb{"uninstall", cmd_uninstall, NeedsStore::no, UsesPager::no, Remote::no,
         "restore the previous kernel settings (root)"},
};

InstallOptions install_options(const Options& o) {
  return {o.handler, o.sysctl_dir, o.state_dir, o.proc_sys, o.kernel_release};
}

} // namespace

std::span<const Verb> verbs() {
  return k_verbs;
}

const Verb* find_verb(std::string_view name) {
  const auto it =
      std::find_if(k_verbs.begin(), k_verbs.end(), [&](const Verb& v) { return v.name == name; });
  return it == k_verbs.end() ? nullptr : &*it;
}

Exit cmd_install(Context& ctx) {
  return install(install_options(ctx.opts));
}

Exit cmd_uninstall(Context& ctx) {
  return uninstall(install_options(ctx.opts));
}

} // namespace cli
