#include "common/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include <syslog.h>

namespace common {

void init_logging(std::string_view ident, LogTarget target) {
  static std::string s_ident; // syslog keeps the pointer
  s_ident = ident;
  std::shared_ptr<spdlog::logger> logger;
  if (target == LogTarget::syslog) {
    logger = std::make_shared<spdlog::logger>(
        s_ident,
        std::make_shared<spdlog::sinks::syslog_sink_mt>(s_ident, LOG_PID, LOG_DAEMON, true));
    logger->set_pattern("%v");
  } else {
    logger = std::make_shared<spdlog::logger>(s_ident,
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%n: %l: %v");
  }
  logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

} // namespace common
