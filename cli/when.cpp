#include "cli/when.hpp"

#include "common/base/parse.hpp"
#include "common/base/units.hpp"

#include <algorithm>
#include <array>
#include <cctype>
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

// A calendar date, maybe with a time and a zone ("Z", "UTC", "+02:00", "-0500").
std::optional<int64_t> parse_date(std::string_view s) {
  std::optional<int64_t> offset; // seconds east of UTC, when a zone is given
  if (ends_with_word(s, "UTC")) {
    offset = 0;
  } else if (s.size() > 10 && s.ends_with('Z')) {
    s.remove_suffix(1);
    offset = 0;
  } else if (s.size() > 16) {
    // ±hh:mm or ±hhmm after a time
    const size_t sign = s.find_last_of("+-");
    if (sign != std::string_view::npos && sign > 10) {
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
      offset = (s[sign] == '-' ? -1 : 1) * ((*hhmm / 100) * 3600 + (*hhmm % 100) * 60);
      s = common::trim_blanks(s.substr(0, sign));
    }
  }
  const std::string text(s);
  for (const char* fmt :
       {"%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"}) {
    struct tm tm {};
    const char* end = strptime(text.c_str(), fmt, &tm);
    if (end == nullptr || *end != '\0') {
      continue;
    }
    // strptime accepts day 31 of any month; mktime would roll it over silently.
    struct tm check = tm;
    check.tm_isdst = -1;
    if (!offset) {
      auto t = local(tm);
      if (!t) {
        return std::nullopt;
      }
      const time_t tt = static_cast<time_t>(*t);
      localtime_r(&tt, &check);
      if (check.tm_mday != tm.tm_mday) {
        return std::nullopt;
      }
      return t;
    }
    const int64_t utc = static_cast<int64_t>(timegm(&check));
    if (check.tm_mday != tm.tm_mday) {
      return std::nullopt;
    }
    return utc - *offset;
  }
  return std::nullopt;
}

} // namespace

std::optional<int64_t> parse_when(std::string_view text, int64_t now) {
  if (text.size() > k_max_text) {
    return std::nullopt;
  }
  std::string_view s = common::trim_blanks(text);
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
  return parse_date(s);
}

} // namespace cli
