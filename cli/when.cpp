#include "cli/when.hpp"

#include "common/base/parse.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>
#include <string>
#include <utility>

namespace cli {

namespace {

constexpr size_t k_max_text = 64;

// Units as systemd.time(7) spells them; months and years as its averages.
constexpr std::array<std::pair<std::string_view, int64_t>, 26> k_units = {{
    {"s", 1},           {"sec", 1},          {"secs", 1},      {"second", 1},
    {"seconds", 1},     {"m", 60},           {"min", 60},      {"mins", 60},
    {"minute", 60},     {"minutes", 60},     {"h", 3600},      {"hr", 3600},
    {"hour", 3600},     {"hours", 3600},     {"d", 86400},     {"day", 86400},
    {"days", 86400},    {"w", 604800},       {"week", 604800}, {"weeks", 604800},
    {"month", 2629800}, {"months", 2629800}, {"M", 2629800},   {"y", 31557600},
    {"year", 31557600}, {"years", 31557600},
}};

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') {
    s.remove_prefix(1);
  }
  while (!s.empty() && s.back() == ' ') {
    s.remove_suffix(1);
  }
  return s;
}

bool eat(std::string_view& s, std::string_view word) {
  if (s.starts_with(word)) {
    s.remove_prefix(word.size());
    return true;
  }
  return false;
}

bool ends_with_word(std::string_view& s, std::string_view word) {
  if (s.size() > word.size() && s.ends_with(word) && s[s.size() - word.size() - 1] == ' ') {
    s = trim(s.substr(0, s.size() - word.size()));
    return true;
  }
  return false;
}

// "1h30min", "2 hours", "10min": a sum of number-unit pairs, blanks allowed between them.
std::optional<int64_t> parse_span(std::string_view s) {
  int64_t total = 0;
  bool any = false;
  s = trim(s);
  while (!s.empty()) {
    size_t digits = 0;
    while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits])) != 0) {
      ++digits;
    }
    auto n = common::parse_number<int64_t>(s.substr(0, digits));
    // At most 2^32 of a unit of at most 2^25 s, and (64 bytes of text) at most 32 terms: the sum
    // stays below 2^62.
    if (!n || *n > (int64_t{1} << 32)) {
      return std::nullopt;
    }
    s = trim(s.substr(digits));
    size_t letters = 0;
    while (letters < s.size() && std::isalpha(static_cast<unsigned char>(s[letters])) != 0) {
      ++letters;
    }
    const std::string_view unit = s.substr(0, letters);
    const auto it = std::find_if(k_units.begin(), k_units.end(),
                                 [&](const auto& u) { return u.first == unit; });
    if (it == k_units.end()) {
      return std::nullopt;
    }
    total += *n * it->second;
    any = true;
    s = trim(s.substr(letters));
  }
  return any ? std::optional(total) : std::nullopt;
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
      s = trim(s.substr(0, sign));
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
  std::string_view s = trim(text);
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
      if (!rest.empty() && !parse_clock(trim(rest), tm)) {
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
  if (!span.empty() && std::isdigit(static_cast<unsigned char>(span.front())) != 0) {
    if (auto secs = parse_span(span)) {
      return now + direction * *secs;
    }
  }
  return parse_date(s);
}

} // namespace cli
