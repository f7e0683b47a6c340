// Sizes and durations as people write them: in the configuration file and on command lines.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace common {

// Parses "16G", "512M", "4096", "1.5T" (binary units, K M G T in either case); nullopt when
// malformed, negative or past 2^64.
std::optional<uint64_t> parse_size(std::string_view text);

// The other way round, for people: "512 B", "1.5 MiB", "16.0 GiB".
std::string human_size(uint64_t bytes);

// Parses a time span into seconds, spelled as in systemd.time(7): a bare number of seconds
// ("90"), or a sum of numbers with units ("30s", "15min", "2h", "1h30m", "2 weeks", "1y"; m is
// minutes, M months). At most 2^32 of a unit each; nullopt when malformed or past 2^62 seconds.
std::optional<uint64_t> parse_duration(std::string_view text);

} // namespace common
