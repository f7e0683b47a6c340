// Steps 1 and 3 of the handler: the process secured before anything else can go wrong, and the
// configuration loaded.
#include "common/base/escape.hpp"
#include "common/base/io.hpp"
#include "common/base/parse.hpp"
#include "common/base/proc_stat.hpp"
#include "common/config/config.hpp"
#include "handler/context.hpp"
#include "handler/core_args.hpp"
#include "handler/steps.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace handler {

// 1. Secure the process before anything else can go wrong.
void secure_process(Context& ctx) {
  // The kernel starts us with fds 1 and 2 closed: the first open() would land on 1 and a log
  // line could end up inside a core. Move the pipe above 2 and fill 0-2 with /dev/null.
  const int in = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
  if (in >= 0) {
    ctx.input.reset(in);
  }
  for (int fd = 0; fd <= 2; ++fd) {
    if (fd == 0 || ::fcntl(fd, F_GETFD) < 0) {
      const int null = ::open("/dev/null", O_RDWR | O_NOCTTY);
      if (null >= 0 && null != fd) {
        ::dup2(null, fd);
        ::close(null);
      }
    }
  }
  // A handler that crashes must not dump into itself, and nothing we exec may gain privileges.
  // RLIMIT_CORE stays the kernel's {1,1}: raising it would allow recursive dumps.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::umask(0027);
  ctx.running_as_root = ::geteuid() == 0;
}

namespace {

// True when the kernel started us for a core dump: usermode helpers are children of kthreadd
// (CLONE_PARENT in kernel/umh.c), a kernel thread.
bool started_by_kernel() {
  const pid_t parent = ::getppid();
  auto stat = common::read_file(AT_FDCWD, "/proc/" + std::to_string(parent) + "/stat", 4096);
  if (!stat) {
    return parent == 2;
  }
  // Field 9: the task's flags.
  constexpr uint64_t k_pf_kthread = 0x00200000;
  const auto field = common::stat_field(*stat, 9);
  const auto flags = field ? common::parse_number<uint64_t>(*field) : std::nullopt;
  return flags ? (*flags & k_pf_kthread) != 0 : parent == 2;
}

} // namespace

// 3. Configuration: --config, else the default path (which may be absent).
void load_configuration(Context& ctx) {
  if (started_by_kernel() && (ctx.args.config_path || ctx.args.store_path)) {
    // Options can hide in positional data (a hostname "--store=/x h" on a kernel that splits
    // it): from the kernel, only those core_pattern itself spells out count.
    auto pattern = common::read_file(AT_FDCWD, "/proc/sys/kernel/core_pattern", 4096);
    common::keep_pattern_options(ctx.args, pattern ? *pattern : std::string());
    ctx.warnings = ctx.args.warnings;
  }
  const std::string path = ctx.args.config_path.value_or(common::k_default_config_path);
  auto loaded = common::load_config(path, ctx.args.config_path ? common::MissingOk::no
                                                               : common::MissingOk::yes);
  if (!loaded) {
    ctx.warnings.push_back(loaded.error().message + ", using defaults");
  } else {
    ctx.config = std::move(loaded->config);
    for (auto& w : loaded->warnings) {
      ctx.warnings.push_back("config " + common::quoted(path) + " " + w);
    }
  }
  if (ctx.args.store_path) {
    ctx.config.store = *ctx.args.store_path;
  }
}

} // namespace handler
