// process-core-uploader: the store's crashes into S3-compatible object storage.
#include "common/base/escape.hpp"
#include "uploader/run.hpp"

#include <spdlog/spdlog.h>

#include <exception>

int main(int argc, char** argv) {
  // The one catch boundary: an escaped exception is logged once, status 1 (systemd restarts).
  try {
    return uploader::run(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
  } catch (const std::exception& e) {
    spdlog::critical("internal error: {}", common::printable(e.what()));
  } catch (...) {
    spdlog::critical("internal error");
  }
  return 1;
}
