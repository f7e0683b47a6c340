// Logging: a thin layer over spdlog that picks the sink each binary needs.
#pragma once

#include <string_view>

namespace common {

enum class LogTarget {
  syslog, // the handler: the kernel starts it with stderr closed
  stderr, // the exporter (journald captures it) and corectl
};

// Installs the default spdlog logger; `ident` names the program in syslog.
void init_logging(std::string_view ident, LogTarget target);

} // namespace common
