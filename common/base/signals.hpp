// Signal names without the "SIG" prefix, as they appear in records, labels and filters.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace common {

// "SEGV" for 11, "RTMIN+3" for real-time signals, "SIG<n>" for numbers with no name.
std::string signal_name(int signo);

// Parses "SEGV", "sigsegv", "SIGSEGV" or "11"; nullopt when it is none of these.
std::optional<int> parse_signal(std::string_view text);

} // namespace common
