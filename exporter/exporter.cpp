#include "exporter/exporter.hpp"

#include "common/base/escape.hpp"
#include "common/base/io.hpp"
#include "common/base/log.hpp"
#include "common/config/config.hpp"
#include "exporter/crash_state.hpp"
#include "exporter/http_server.hpp"
#include "exporter/kmsg_follower.hpp"
#include "exporter/metrics.hpp"
#include "exporter/process_metrics.hpp"
#include "exporter/serializer.hpp"
#include "exporter/store_watcher.hpp"
#include "exporter/upload_metrics.hpp"
#include "exporter/web_config.hpp"
#include "process_core_version.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
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
// The cap on max_use/keep_free given as percentages, as the handler and vacuum apply it.
constexpr uint64_t k_percent_cap = 4ULL << 30;

// Everything main() sets up, in the order it is set up (and torn down in reverse).
struct Context {
  Options options;
  common::Config config;
  common::UniqueFd signal_fd;
  std::mutex mutex;
  std::unique_ptr<CrashState> state;
  std::unique_ptr<StoreWatcher> watcher;
  WebConfig web;
  std::shared_ptr<KmsgFollower> kmsg;
  std::string config_text; // the configuration and its drop-ins as read at start (SIGHUP)
  std::unique_ptr<HttpServer> server; // destroyed first: no request outlives the rest
};

bool load_configuration(Context& ctx) {
  const bool given = ctx.options.config_given;
  auto loaded = common::load_config(given ? ctx.options.config_path : common::k_default_config_path,
                                    given ? common::MissingOk::no : common::MissingOk::yes);
  if (!loaded) {
    spdlog::error("{}", common::printable(loaded.error().message));
    return false;
  }
  for (const auto& w : loaded->warnings) {
    spdlog::warn("{}", common::printable(w));
  }
  ctx.config = std::move(loaded->config);
  ctx.config_text = std::move(loaded->text);
  if (ctx.options.store) {
    ctx.config.store = *ctx.options.store;
  }
  if (ctx.options.listen_deprecated) {
    spdlog::warn("--listen is deprecated, use --web.listen-address");
  }
  if (ctx.options.web_config) {
    auto web = load_web_config(*ctx.options.web_config);
    if (!web) {
      spdlog::error("{}", web.error().message);
      return false;
    }
    ctx.web = std::move(*web);
  }
  return true;
}

// SIGTERM/SIGINT (stop) and SIGHUP (reload) arrive on a descriptor polled with the inotify one.
// They are blocked before any thread exists, so the HTTP server's threads inherit the mask and
// never take them.
bool take_signals(Context& ctx) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
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
  ctx.state = std::make_unique<CrashState>(ctx.config.max_executables_per_host,
                                           ctx.config.max_hosts, ctx.config.max_series);
  auto watcher = StoreWatcher::create(ctx.config.store, *ctx.state, ctx.mutex,
                                      ctx.options.no_index ? StoreWatcher::UseIndex::no
                                                           : StoreWatcher::UseIndex::yes);
  if (!watcher) {
    spdlog::error("{}", common::printable(watcher.error().message));
    return false;
  }
  ctx.watcher = std::move(*watcher);
  const double seconds = ctx.watcher->scan();
  size_t records = 0;
  {
    std::lock_guard lock(ctx.mutex);
    records = ctx.state->records();
  }
  // The scan's transient memory (the ledger's JSON tree, directory listings) is free now but
  // still held by malloc, interleaved with the state; give it back, or the exporter would sit
  // at its start-up peak for good under MemoryMax.
  ::malloc_trim(0);
  const auto [from_index, dirs] = ctx.watcher->indexed_dirs();
  spdlog::info("scanned {} records in {} in {:.3f} s ({} of {} directories from the index, {} "
               "records read for their groups)",
               records, common::quoted(ctx.config.store), seconds, from_index, dirs,
               ctx.watcher->group_reads());
  return true;
}

const char* k_landing = R"(<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>process-core exporter</title></head>
<body><h1>process-core exporter</h1>
<p>Crashes captured by process-core on this host, as Prometheus metrics.</p>
<ul><li><a href="{path}">{path}</a>: metrics</li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a>: probes</li></ul>
<p>Version {version}.</p></body></html>
)";

// What each path serves. The scan is done before the server starts, so the exporter is ready
// as soon as it answers; /-/ready still exists for probes that expect it.
HttpResponse route(Context& ctx, const HttpRequest& request) {
  if (request.path == ctx.options.telemetry_path) {
    Snapshot snap;
    {
      std::lock_guard lock(ctx.mutex);
      snap = ctx.state->snapshot();
    }
    std::vector<prometheus::MetricFamily> families;
    // max_use may be a share of the store's file system, which can be resized: resolved per
    // scrape, as the handler does per crash (with the same 4 GiB cap on percentages).
    struct statvfs fs {};
    if (::statvfs(ctx.config.store.c_str(), &fs) == 0) {
      families.push_back(max_use_family(ctx.config.max_use.resolve(
          static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize, k_percent_cap)));
    }
    if (ctx.kmsg) {
      auto lost = ctx.kmsg->Collect();
      families.insert(families.end(), std::make_move_iterator(lost.begin()),
                      std::make_move_iterator(lost.end()));
    }
    if (!ctx.config.upload_url.empty()) {
      auto uploads = upload_families(ctx.config.upload_state_dir, time(nullptr));
      families.insert(families.end(), std::make_move_iterator(uploads.begin()),
                      std::make_move_iterator(uploads.end()));
    }
    auto process = process_families();
    families.insert(families.end(), std::make_move_iterator(process.begin()),
                    std::make_move_iterator(process.end()));
    // Streamed as the client reads: a page of many series never exists in memory at once.
    const Format format = negotiate_format(request.accept);
    const Compression compression = negotiate_compression(request.accept_encoding);
    auto stream =
        std::make_shared<MetricsStream>(std::move(snap), std::move(families), format, compression);
    HttpResponse r;
    r.content_type = content_type(format);
    r.content_encoding = compression == Compression::gzip ? "gzip" : "";
    r.stream = [stream](char* buf, size_t n) { return stream->read(buf, n); };
    return r;
  }
  if (request.path == "/-/healthy") {
    return {200, "text/plain; charset=utf-8", "Healthy\n", "", {}};
  }
  if (request.path == "/-/ready") {
    return {200, "text/plain; charset=utf-8", "Ready\n", "", {}};
  }
  if (request.path == "/") {
    std::string page = k_landing;
    for (size_t at; (at = page.find("{path}")) != std::string::npos;) {
      page.replace(at, 6, ctx.options.telemetry_path);
    }
    page.replace(page.find("{version}"), 9, PROCESS_CORE_VERSION);
    return {200, "text/html; charset=utf-8", std::move(page), "", {}};
  }
  return {404, "text/plain; charset=utf-8", "Not found\n", "", {}};
}

// Dumps the kernel skipped (core_pipe_limit, a failed pipe), from the kernel log.
void follow_kernel_log(Context& ctx) {
  if (ctx.config.kernel_log.empty()) {
    return;
  }
  // Reading /dev/kmsg needs CAP_SYSLOG with kernel.dmesg_restrict = 1 (Debian's default):
  // the shipped unit grants it as an ambient capability.
  auto kmsg = std::make_shared<KmsgFollower>(ctx.config.kernel_log);
  std::string error;
  if (kmsg->start(error)) {
    ctx.kmsg = std::move(kmsg);
  } else {
    spdlog::warn("{}: dumps the kernel skipped are not counted", error);
  }
}

bool serve(Context& ctx) {
  follow_kernel_log(ctx);
  const auto& addresses =
      ctx.options.listen.empty() ? std::vector<std::string>{ctx.config.listen} : ctx.options.listen;
  auto server = HttpServer::start(addresses, ctx.options.web_config.value_or(""), ctx.web,
                                  [&ctx](const HttpRequest& r) { return route(ctx, r); });
  if (!server) {
    spdlog::error("{}", server.error().message);
    return false;
  }
  ctx.server = std::move(*server);
  // With port 0 the kernel picks one; tests read it from this line.
  for (const auto& a : ctx.server->bound()) {
    spdlog::info("listening on {}{}{}", a, ctx.web.tls() ? " (TLS)" : "",
                 ctx.web.users.empty() ? "" : " (basic auth)");
  }
  return true;
}

// SIGHUP, as Prometheus exporters take it: both files are read again and checked, and the
// exporter goes on whatever they say. The web configuration (certificates, keys, users) is in
// force as soon as its file changes, so a reload only says whether it is valid. The
// configuration's keys shape the counting model built at start (caps, the store): a change is
// named as waiting for a restart rather than applied halfway.
void reload(Context& ctx) {
  spdlog::info("reloading the configuration on SIGHUP");
  const bool given = ctx.options.config_given;
  auto loaded = common::load_config(given ? ctx.options.config_path : common::k_default_config_path,
                                    given ? common::MissingOk::no : common::MissingOk::yes);
  if (!loaded) {
    spdlog::error("{}, keeping the running configuration",
                  common::printable(loaded.error().message));
  } else if (loaded->text != ctx.config_text) {
    spdlog::warn("the configuration file changed: its keys take effect when the exporter "
                 "restarts");
  }
  if (ctx.options.web_config) {
    if (auto web = load_web_config(*ctx.options.web_config); !web) {
      spdlog::error("{}, keeping the running web configuration", web.error().message);
    } else {
      spdlog::info("web configuration {} is valid and in force",
                   common::quoted(*ctx.options.web_config));
    }
  }
}

// Milliseconds from now until `due`, at least 0, for poll().
int ms_until(std::chrono::steady_clock::time_point due) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(due - std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, k_degraded_rescan_ms));
}

int follow_store(Context& ctx) {
  using Clock = std::chrono::steady_clock;
  pollfd fds[2] = {{ctx.watcher->fd(), POLLIN, 0}, {ctx.signal_fd.get(), POLLIN, 0}};
  auto rescan_due = Clock::now() + std::chrono::milliseconds(k_degraded_rescan_ms);
  // The index's changes are written between events, when due (exporter/index_sync.cpp).
  int index_ms = ctx.watcher->flush_index();
  auto index_due = Clock::now() + std::chrono::milliseconds(std::max(index_ms, 0));
  for (;;) {
    int timeout = ctx.watcher->degraded() ? ms_until(rescan_due) : -1;
    if (index_ms >= 0) {
      timeout = timeout < 0 ? ms_until(index_due) : std::min(timeout, ms_until(index_due));
    }
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
      if (::read(ctx.signal_fd.get(), &si, sizeof si) != static_cast<ssize_t>(sizeof si)) {
        continue;
      }
      if (si.ssi_signo == SIGHUP) {
        reload(ctx);
        continue;
      }
      spdlog::info("stopping on SIG{}", si.ssi_signo == SIGTERM ? "TERM" : "INT");
      return 0;
    }
    const bool events = (fds[0].revents & POLLIN) != 0;
    if (events) {
      if (auto r = ctx.watcher->process_events(); !r) {
        spdlog::error("{}", common::printable(r.error().message));
        return k_exit_error;
      }
    }
    const auto now = Clock::now();
    if (!ctx.watcher->degraded()) {
      rescan_due = now + std::chrono::milliseconds(k_degraded_rescan_ms);
    } else if (now >= rescan_due) {
      ctx.watcher->scan();
      rescan_due = now + std::chrono::milliseconds(k_degraded_rescan_ms);
    }
    if (index_ms >= 0 && now >= index_due) {
      index_ms = ctx.watcher->flush_index();
      index_due = now + std::chrono::milliseconds(std::max(index_ms, 0));
    }
    // What an event changed is written a second later, once a burst has passed.
    constexpr auto k_after_events = std::chrono::seconds(1);
    if (events && (index_ms < 0 || index_due > now + k_after_events)) {
      index_ms = 1000;
      index_due = now + k_after_events;
    }
  }
}

} // namespace

int run(const std::vector<std::string>& args) {
  Context ctx;
  common::init_logging("process-core-exporter", common::LogTarget::stderr);
  auto options = parse_options(args);
  if (!options) {
    spdlog::error("{} (see --help)", options.error().message);
    return k_exit_usage;
  }
  ctx.options = std::move(*options);
  common::set_log_format(ctx.options.log_format);
  spdlog::set_level(ctx.options.log_level);
  if (ctx.options.help || ctx.options.version) {
    ctx.options.help ? static_cast<void>(std::fputs(usage_text().c_str(), stdout))
                     : static_cast<void>(std::puts("process-core-exporter " PROCESS_CORE_VERSION));
    return 0;
  }
  if (!load_configuration(ctx) || // 1. configuration file, then flags
      !take_signals(ctx) ||       // 2. SIGTERM/SIGINT through a signalfd
      !scan_store(ctx) ||         // 3. the whole store and its ledger, then watch it
      !serve(ctx)) {              // 4. /metrics, /-/healthy, /-/ready and / over HTTP(S)
    return k_exit_error;
  }
  return follow_store(ctx); // 5. inotify events until SIGTERM
}

} // namespace exporter
