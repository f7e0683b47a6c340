#include "cli/catalog/when.hpp"

#include "common/base/parse.hpp"
#include "common/base/units.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <string>
#include <utility>

namespace cli {

namespace {

constexpr size_t k_max_text = 64;

bool eat(std::string_view& s, std::string_view word) {
  if (s.starts_with(word)) {
    s.remove_prefix(word.size());
    return true;
  }
  return false;
}

bool ends_with_word(std::string_view& s, std::string_view word) {
  if (s.size() > word.size() && s.ends_with(word) && s[s.size() - word.size() - 1] == ' ') {
    s = common::trim_blanks(s.substr(0, s.size() - word.size()));
    return true;
  }
  return false;
}

// "HH:MM" or "HH:MM:SS" into tm's time fields.
bool parse_clock(std::string_view s, struct tm& tm) {
  const std::string text(s);
  struct tm t = tm;
  for (const char* fmt : {"%H:%M:%S", "%H:%M"}) {
    const char* end = strptime(text.c_str(), fmt, &t);
    if (end != nullptr && *end == '\0') {
      tm.tm_hour = t.tm_hour;
      tm.tm_min = t.tm_min;
      tm.tm_sec = t.tm_sec;
      return true;
    }
  }
  return false;
}

std::optional<int64_t> local(struct tm tm) {
  tm.tm_isdst = -1;
  const time_t t = mktime(&tm);
  return t == static_cast<time_t>(-1) ? std::nullopt : std::optional<int64_t>(t);
}

// The zone a date is read in: local time (TZ), a fixed offset, or a tz database name.
struct Zone {
  enum class Kind { local, offset, named } kind = Kind::local;
  int64_t offset = 0; // seconds east of UTC, for Kind::offset
  std::string name;   // for Kind::named
};

// Runs `f` with TZ set to `zone.name` (for named zones), restoring TZ afterwards. corectl parses
// its options before any other thread starts, so switching the process's zone is safe here.
template <class F>
auto in_zone(const Zone& zone, F&& f) {
  if (zone.kind != Zone::Kind::named) {
    return f();
  }
  const char* old = std::getenv("TZ");
  const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  ::setenv("TZ", zone.name.c_str(), 1);
  ::tzset();
  auto result = f();
  if (saved) {
    ::setenv("TZ", saved->c_str(), 1);
  } else {
    ::unsetenv("TZ");
  }
  ::tzset();
  return result;
}

// A tz database name as systemd.time(7) takes it after a time ("Europe/Berlin"), or one of
// the local zone's abbreviations ("CET", as coredumpctl prints them). Names are checked against
// the installed database, never used as paths beyond it.
std::optional<Zone> zone_name(std::string_view word) {
  constexpr size_t k_max_zone = 40;
  if (word.empty() || word.size() > k_max_zone || word.front() == '/' ||
      word.find("..") != std::string_view::npos ||
      std::none_of(word.begin(), word.end(),
                   [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }) ||
      !std::all_of(word.begin(), word.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '/' || c == '_' ||
               c == '-' || c == '+';
      })) {
    return std::nullopt;
  }
  ::tzset();
  for (const char* abbreviation : {tzname[0], tzname[1]}) {
    if (abbreviation != nullptr && word == abbreviation) {
      return Zone{};
    }
  }
  struct stat st {};
  const std::string path = "/usr/share/zoneinfo/" + std::string(word);
  if (word.find('/') == std::string_view::npos && word != "UTC" && word != "GMT") {
    // Bare words that are files in zoneinfo ("posixrules", "zone.tab") are no zones.
    return std::nullopt;
  }
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  return Zone{Zone::Kind::named, 0, std::string(word)};
}

// Splits a trailing zone off `s`: "Z", "UTC", "+02:00", "-0500", a tz name or a local
// abbreviation. nullopt when the text ends in something that looks like a zone but is none.
std::optional<Zone> take_zone(std::string_view& s) {
  if (ends_with_word(s, "UTC") || ends_with_word(s, "GMT")) {
    return Zone{Zone::Kind::offset, 0, {}};
  }
  if (s.size() > 10 && s.ends_with('Z')) {
    s.remove_suffix(1);
    return Zone{Zone::Kind::offset, 0, {}};
  }
  if (s.size() > 16) {
    // ±hh:mm or ±hhmm after a time
    const size_t sign = s.find_last_of("+-");
    if (sign != std::string_view::npos && sign > 10 &&
        (std::isdigit(static_cast<unsigned char>(s[sign - 1])) != 0 || s[sign - 1] == ' ') &&
        s.find(' ', sign) == std::string_view::npos &&
        s.substr(sign + 1).find_first_not_of("0123456789:") == std::string_view::npos) {
      std::string_view z = s.substr(sign + 1);
      std::string digits;
      for (char ch : z) {
        if (ch != ':') {
          digits += ch;
        }
      }
      auto hhmm = common::parse_number<int64_t>(digits);
      if (digits.size() != 4 || !hhmm || *hhmm / 100 > 23 || *hhmm % 100 > 59) {
        return std::nullopt;
      }
      const int64_t east = (s[sign] == '-' ? -1 : 1) * ((*hhmm / 100) * 3600 + (*hhmm % 100) * 60);
      s = common::trim_blanks(s.substr(0, sign));
      return Zone{Zone::Kind::offset, east, {}};
    }
  }
  if (const size_t blank = s.rfind(' '); blank != std::string_view::npos && blank > 9) {
    const std::string_view word = s.substr(blank + 1);
    if (std::isalpha(static_cast<unsigned char>(word.front())) != 0) {
      auto zone = zone_name(word);
      if (zone) {
        s = common::trim_blanks(s.substr(0, blank));
      }
      return zone;
    }
  }
  return Zone{};
}

// A calendar date, maybe with a time (fractions of a second are dropped) and a zone. When
// `weekday` is set (0 = Sunday) the date must fall on it, as systemd.time(7) requires.
std::optional<int64_t> parse_date(std::string_view s, std::optional<int> weekday) {
  const auto zone = take_zone(s);
  if (!zone) {
    return std::nullopt;
  }
  const std::string text(s);
  for (const char* fmt :
       {"%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"}) {
    struct tm tm {};
    const char* end = strptime(text.c_str(), fmt, &tm);
    if (end == nullptr || *end != '\0') {
      continue;
    }
    return in_zone(*zone, [&]() -> std::optional<int64_t> {
      // strptime accepts day 31 of any month; mktime would roll it over silently.
      struct tm check = tm;
      check.tm_isdst = -1;
      std::optional<int64_t> t;
      if (zone->kind == Zone::Kind::offset) {
        t = static_cast<int64_t>(timegm(&check)) - zone->offset;
      } else {
        t = local(tm);
        if (!t) {
          return std::nullopt;
        }
        const time_t tt = static_cast<time_t>(*t);
        localtime_r(&tt, &check);
      }
      if (check.tm_mday != tm.tm_mday || (weekday && check.tm_wday != *weekday)) {
        return std::nullopt;
      }
      return t;
    });
  }
  return std::nullopt;
}

// A leading weekday ("Tue", "Tuesday", any case), as coredumpctl and journalctl print times.
std::optional<int> take_weekday(std::string_view& s) {
  static constexpr std::array<std::string_view, 7> k_days = {
      "sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"};
  const size_t blank = s.find(' ');
  if (blank == std::string_view::npos) {
    return std::nullopt;
  }
  std::string word(s.substr(0, blank));
  std::transform(word.begin(), word.end(), word.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  for (size_t day = 0; day < k_days.size(); ++day) {
    if (word == k_days[day] || word == k_days[day].substr(0, 3)) {
      s = common::trim_blanks(s.substr(blank + 1));
      return static_cast<int>(day);
    }
  }
  return std::nullopt;
}

// Drops the fraction of a second after a clock ("10:30:00.250" → "10:30:00"): times are
// compared in whole seconds, and a time with a fraction names the second it falls in.
std::string drop_fractions(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool after_seconds = i >= 3 && s[i - 3] == ':' &&
                               std::isdigit(static_cast<unsigned char>(s[i - 2])) != 0 &&
                               std::isdigit(static_cast<unsigned char>(s[i - 1])) != 0;
    if (s[i] == '.' && after_seconds && i + 1 < s.size() &&
        std::isdigit(static_cast<unsigned char>(s[i + 1])) != 0) {
      while (i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])) != 0) {
        ++i;
      }
      continue;
    }
    out += s[i];
  }
  return out;
}

} // namespace

std::optional<int64_t> parse_when(std::string_view text, int64_t now) {
  if (text.size() > k_max_text) {
    return std::nullopt;
  }
  const std::string whole = drop_fractions(common::trim_blanks(text));
  std::string_view s = whole;
  if (s.empty()) {
    return std::nullopt;
  }
  if (s == "now") {
    return now;
  }
  if (eat(s, "@")) {
    return common::parse_number<int64_t>(s);
  }
  // A day word, maybe followed by a time.
  const time_t t = static_cast<time_t>(now);
  struct tm today {};
  localtime_r(&t, &today);
  today.tm_hour = today.tm_min = today.tm_sec = 0;
  for (auto [word, days] :
       {std::pair{"today", 0}, std::pair{"yesterday", -1}, std::pair{"tomorrow", 1}}) {
    std::string_view rest = s;
    if (eat(rest, word) && (rest.empty() || rest.front() == ' ')) {
      struct tm tm = today;
      tm.tm_mday += days; // mktime normalises, across months and DST
      if (!rest.empty() && !parse_clock(common::trim_blanks(rest), tm)) {
        return std::nullopt;
      }
      return local(tm);
    }
  }
  if (struct tm tm = today;
      s.find(':') != std::string_view::npos && s.size() <= 8 && parse_clock(s, tm)) {
    return local(tm);
  }
  // A span: before now unless it says otherwise.
  std::string_view span = s;
  int64_t direction = -1;
  if (eat(span, "+")) {
    direction = 1;
  } else if (eat(span, "-")) {
    direction = -1;
  } else if (ends_with_word(span, "ago")) {
    direction = -1;
  } else if (ends_with_word(span, "left")) {
    direction = 1;
  }
  // A span names its unit here ("2h", "1h30min", "2 hours"): a bare number is no time.
  if (!span.empty() && std::isdigit(static_cast<unsigned char>(span.front())) != 0 &&
      span.find_first_not_of("0123456789") != std::string_view::npos) {
    // At most 2^62 s: `now` plus or minus it cannot overflow.
    if (auto secs = common::parse_duration(span)) {
      return now + direction * static_cast<int64_t>(*secs);
    }
  }
  std::string_view date = s;
  const auto weekday = take_weekday(date);
  return parse_date(date, weekday);
}

} // namespace cli
