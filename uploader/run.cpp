#include "uploader/run.hpp"

#include "common/base/escape.hpp"
#include "common/config/config.hpp"
#include "process_core_version.hpp"
#include "uploader/uploader.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace uploader {

namespace {

constexpr int k_exit_failure = 1;
constexpr int k_exit_usage = 2;
constexpr int k_exit_pending = 3; // --once: something could not be uploaded

struct Options {
  std::string config = common::k_default_config_path;
  bool once = false;
  std::string credentials; // overrides upload_credentials (systemd's LoadCredential= copy)
};

} // namespace

int run(const std::vector<std::string>& args) {
  // Messages go to stderr (the journal, under systemd), never mixed with output.
  spdlog::set_default_logger(spdlog::stderr_logger_st("process-core-uploader"));
  spdlog::set_pattern("%n: %l: %v");
  // 1. The command line.
  Options opt;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--once") {
      opt.once = true;
    } else if (args[i] == "--config" && i + 1 < args.size()) {
      opt.config = args[++i];
    } else if (args[i] == "--credentials" && i + 1 < args.size()) {
      opt.credentials = args[++i];
    } else if (args[i] == "--version") {
      std::printf("process-core-uploader %s\n", PROCESS_CORE_VERSION);
      return 0;
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("Usage: process-core-uploader [--config FILE] [--credentials FILE] [--once]\n"
                  "Uploads the store's crash records and cores to S3 (upload_* keys).\n");
      return 0;
    } else {
      std::fprintf(stderr, "process-core-uploader: unknown argument '%s'\n",
                   common::printable(args[i]).c_str());
      return k_exit_usage;
    }
  }
  // 2. The configuration, and the settings it makes (credentials read, never logged).
  auto loaded = common::load_config(opt.config, common::MissingOk::yes);
  if (!loaded) {
    spdlog::error("{}", loaded.error().message);
    return k_exit_failure;
  }
  for (const auto& w : loaded->warnings) {
    spdlog::warn("{}", w);
  }
  if (!opt.credentials.empty()) {
    loaded->config.upload_credentials = opt.credentials;
  }
  auto settings = settings_from_config(loaded->config);
  if (!settings) {
    spdlog::error("{}", settings.error().message);
    return k_exit_failure;
  }
  // 3. The store, the state directory and the client.
  auto up = Uploader::create(std::move(*settings));
  if (!up) {
    spdlog::error("{}", up.error().message);
    return k_exit_failure;
  }
  // 4. --once: one sweep that tries everything pending; else the service.
  if (opt.once) {
    const SweepResult r = up->sweep(Due::ignore);
    spdlog::info("{} records and {} cores uploaded, {} failed", r.uploaded_records,
                 r.uploaded_cores, r.failed);
    return r.pending > 0 ? k_exit_pending : 0;
  }
  if (auto s = up->serve(); !s) {
    spdlog::error("{}", s.error().message);
    return k_exit_failure;
  }
  return 0;
}

} // namespace uploader
