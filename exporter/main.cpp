// process-core-exporter: Prometheus metrics for the process-core store.
#include "common/base/escape.hpp"
#include "exporter/exporter.hpp"

#include <spdlog/spdlog.h>

#include <exception>

int main(int argc, char** argv) {
  // The one catch boundary: an exception that escapes is logged once and ends the process with
  // status 1 (systemd restarts it), instead of std::terminate's abort and core dump.
  try {
    return exporter::run(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
  } catch (const std::exception& e) {
    spdlog::critical("internal error: {}", common::printable(e.what()));
  } catch (...) {
    spdlog::critical("internal error");
  }
  return 1;
}
