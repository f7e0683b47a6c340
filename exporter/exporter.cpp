#include "exporter/exporter.hpp"

#include "common/config.hpp"
#include "common/log.hpp"
#include "exporter/crash_state.hpp"
#include "exporter/kmsg_follower.hpp"
#include "exporter/metrics.hpp"
#include "exporter/store_watcher.hpp"
#include "process_core_version.hpp"

#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

namespace exporter {

namespace {

constexpr int k_exit_error = 1;
constexpr int k_exit_usage = 2;
// How often a degraded watcher (inotify limit) lists the whole store instead.
constexpr int k_degraded_rescan_ms = 30'000;
// civetweb worker threads: Prometheus scrapes one at a time; a second serves a curious human.
constexpr size_t k_http_threads = 2;

// Everything main() sets up, in the order it is set up (and torn down in reverse).
struct Context {
  Options options;
  common::Config config;
  common::UniqueFd signal_fd;
  std::mutex mutex;
  std::unique_ptr<CrashState> state;
  std::unique_ptr<StoreWatcher> watcher;
  std::shared_ptr<MetricsCollector> collector;
  std::shared_ptr<KmsgFollower> kmsg;
  std::unique_ptr<prometheus::Exposer> exposer; // destroyed first: no scrape outlives the rest
};

void print_usage() {
  std::fputs("Usage: process-core-exporter [OPTIONS]\n"
             "Serves crash counts from the process-core store as Prometheus metrics.\n"
             "  --config FILE       configuration (default /etc/process-core/process-core.conf)\n"
             "  --store DIR         store root (overrides `store` of the configuration)\n"
             "  --listen ADDR:PORT  HTTP address (overrides `listen`; default 127.0.0.1:9464)\n"
             "  --version           print the version\n",
             stdout);
}

bool load_configuration(Context& ctx) {
  const bool given = ctx.options.config_given;
  auto loaded = common::load_config(given ? ctx.options.config_path : common::k_default_config_path,
                                    given ? common::MissingOk::no : common::MissingOk::yes);
  if (!loaded) {
    spdlog::error("{}", loaded.error().message);
    return false;
  }
  for (const auto& w : loaded->warnings) {
    spdlog::warn("{}", w);
  }
  ctx.config = std::move(loaded->config);
  if (ctx.options.store) {
    ctx.config.store = *ctx.options.store;
  }
  if (ctx.options.listen) {
    ctx.config.listen = *ctx.options.listen;
  }
  return true;
}

// SIGTERM/SIGINT arrive on a descriptor polled with the inotify one. They are blocked before
// any thread exists, so civetweb's threads inherit the mask and never take them.
bool take_signals(Context& ctx) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
    spdlog::error("Failed to block SIGTERM: {}", std::strerror(errno));
    return false;
  }
  const int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) {
    spdlog::error("Failed to create a signalfd: {}", std::strerror(errno));
    return false;
  }
  ctx.signal_fd.reset(fd);
  // A scraper that hangs up mid-response must not kill the exporter.
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}

bool scan_store(Context& ctx) {
  ctx.state = std::make_unique<CrashState>(ctx.config.max_executables_per_host);
  auto watcher = StoreWatcher::create(ctx.config.store, *ctx.state, ctx.mutex);
  if (!watcher) {
    spdlog::error("{}", watcher.error().message);
    return false;
  }
  ctx.watcher = std::move(*watcher);
  const double seconds = ctx.watcher->scan();
  Snapshot snap;
  {
    std::lock_guard lock(ctx.mutex);
    snap = ctx.state->snapshot();
  }
  spdlog::info("scanned {} records in {} in {:.3f} s", snap.records,
               common::quoted(ctx.config.store), seconds);
  return true;
}

bool serve(Context& ctx) {
  try {
    ctx.exposer = std::make_unique<prometheus::Exposer>(ctx.config.listen, k_http_threads);
  } catch (const std::exception& e) {
    spdlog::error("Failed to listen on {}: {}", common::quoted(ctx.config.listen), e.what());
    return false;
  }
  ctx.collector = std::make_shared<MetricsCollector>(*ctx.state, ctx.mutex);
  ctx.exposer->RegisterCollectable(ctx.collector);
  if (!ctx.config.kernel_log.empty()) {
    // Reading /dev/kmsg needs CAP_SYSLOG with kernel.dmesg_restrict = 1 (Debian's default):
    // the shipped unit grants it as an ambient capability.
    auto kmsg = std::make_shared<KmsgFollower>(ctx.config.kernel_log);
    std::string error;
    if (kmsg->start(error)) {
      ctx.kmsg = std::move(kmsg);
      ctx.exposer->RegisterCollectable(ctx.kmsg);
    } else {
      spdlog::warn("{}: dumps the kernel skipped are not counted", error);
    }
  }
  const auto ports = ctx.exposer->GetListeningPorts();
  // With port 0 the kernel picks one; tests read it from this line.
  const std::string host = ctx.config.listen.substr(0, ctx.config.listen.rfind(':'));
  spdlog::info("listening on {}:{}", host, ports.empty() ? 0 : ports.front());
  return true;
}

int follow_store(Context& ctx) {
  pollfd fds[2] = {{ctx.watcher->fd(), POLLIN, 0}, {ctx.signal_fd.get(), POLLIN, 0}};
  for (;;) {
    const int timeout = ctx.watcher->degraded() ? k_degraded_rescan_ms : -1;
    const int n = ::poll(fds, 2, timeout);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      spdlog::error("Failed to poll: {}", std::strerror(errno));
      return k_exit_error;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si{};
      if (::read(ctx.signal_fd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        spdlog::info("stopping on SIG{}", si.ssi_signo == SIGTERM ? "TERM" : "INT");
      }
      return 0;
    }
    if (n == 0) {
      ctx.watcher->scan();
      continue;
    }
    if (fds[0].revents & POLLIN) {
      if (auto r = ctx.watcher->process_events(); !r) {
        spdlog::error("{}", r.error().message);
        return k_exit_error;
      }
    }
  }
}

} // namespace

common::Expected<Options> parse_options(const std::vector<std::string>& args) {
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::optional<std::string> inline_value;
    if (arg.starts_with("--") && arg.find('=') != std::string::npos) {
      inline_value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
    }
    auto value = [&]() -> common::Expected<std::string> {
      if (inline_value) {
        return *inline_value;
      }
      if (i + 1 >= args.size()) {
        return common::fail("option '" + arg + "' needs a value");
      }
      return args[++i];
    };
    if (arg == "--help" || arg == "-h") {
      o.help = true;
    } else if (arg == "--version") {
      o.version = true;
    } else if (arg == "--config" || arg == "--store" || arg == "--listen") {
      auto v = value();
      if (!v) {
        return std::unexpected(v.error());
      }
      if (arg == "--config") {
        o.config_path = *v;
        o.config_given = true;
      } else if (arg == "--store") {
        o.store = *v;
      } else {
        if (v->rfind(':') == std::string::npos) {
          return common::fail("--listen needs ADDR:PORT, got '" + *v + "'");
        }
        o.listen = *v;
      }
    } else {
      return common::fail("unknown argument '" + args[i] + "'");
    }
  }
  return o;
}

int run(const std::vector<std::string>& args) {
  Context ctx;
  common::init_logging("process-core-exporter", common::LogTarget::stderr);
  auto options = parse_options(args);
  if (!options) {
    spdlog::error("{} (see --help)", options.error().message);
    return k_exit_usage;
  }
  ctx.options = std::move(*options);
  if (ctx.options.help || ctx.options.version) {
    ctx.options.help ? print_usage()
                     : static_cast<void>(std::puts("process-core-exporter " PROCESS_CORE_VERSION));
    return 0;
  }
  if (!load_configuration(ctx) || // 1. configuration file, then flags
      !take_signals(ctx) ||       // 2. SIGTERM/SIGINT through a signalfd
      !scan_store(ctx) ||         // 3. the whole store and its ledger, then watch it
      !serve(ctx)) {              // 4. /metrics
    return k_exit_error;
  }
  return follow_store(ctx); // 5. inotify events until SIGTERM
}

} // namespace exporter
