// Time specifications for --since and --until, in the forms systemd users type (systemd.time(7)).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cli {

// Seconds since the epoch for `text`, relative to `now`; nullopt when it is not understood.
//   now, today, yesterday, tomorrow           (midnight, local time)
//   yesterday 14:00, today 08:00:30           (a day word and a time)
//   08:00, 08:00:30                           (today at that time)
//   2h, 10min, 1h30m, -2h, 2 hours ago        (that long ago; m and min are minutes)
//   +2h, 2 hours left                         (that long from now)
//   2026-11-22, 2026-11-22 10:30[:00]         (local time; T instead of the blank too)
//   2026-11-22T10:30:00Z, …+02:00, … UTC      (with a zone)
//   … Europe/Berlin, … CET                    (a tz database name; the local zone's abbreviations)
//   Tue 2026-12-01 22:49:03 UTC               (coredumpctl's and journalctl's own format: the
//                                              weekday must match the date)
//   2026-12-01 22:49:03.250                   (fractions of a second name the second they are in)
//   @1763780000                               (seconds since the epoch)
// Local times follow TZ. Input longer than 64 bytes is refused.
std::optional<int64_t> parse_when(std::string_view text, int64_t now);

} // namespace cli
