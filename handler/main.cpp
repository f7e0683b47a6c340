// process-core: run by the kernel for every core dump (see core_pattern in core(5)).
#include "common/base/escape.hpp"
#include "common/base/log.hpp"
#include "handler/handler.hpp"

#include <exception>
#include <string>

namespace {

// The kernel closed stderr: the one place an escaped error can still be seen is the log.
void log_internal_error(const std::string& what) {
  common::init_logging("process-core", common::LogTarget::syslog);
  common::log_event(spdlog::level::critical,
                    "internal error: " + common::printable(what) + "; no record written", {});
}

} // namespace

int main(int argc, char** argv) {
  // The outer catch boundary: handler::run() turns any exception into a record itself; what
  // still escapes it (thrown before its own boundary, e.g. building its state) is logged once
  // and ends the run with status 1 instead of std::terminate's abort().
  try {
    return handler::run(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
  } catch (const std::exception& e) {
    log_internal_error(e.what());
  } catch (...) {
    log_internal_error("an exception of unknown type");
  }
  return 1;
}
