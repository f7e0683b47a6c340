// Debian version ordering, after dpkg's lib/dpkg/version.c and parsehelp.c.
#include "common/packages/debian_version.hpp"

#include <cctype>
#include <charconv>

namespace common {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// dpkg's order(): '~' before the end of a part, the end before letters, letters before the rest.
int order(char c) {
  if (is_digit(c)) {
    return 0;
  }
  if (is_alpha(c)) {
    return c;
  }
  if (c == '~') {
    return -1;
  }
  if (c != '\0') {
    return c + 256;
  }
  return 0;
}

int verrevcmp(std::string_view a, std::string_view b) {
  size_t i = 0;
  size_t j = 0;
  auto at = [](std::string_view s, size_t k) { return k < s.size() ? s[k] : '\0'; };
  while (i < a.size() || j < b.size()) {
    int first_diff = 0;
    while ((i < a.size() && !is_digit(a[i])) || (j < b.size() && !is_digit(b[j]))) {
      const int ac = order(at(a, i));
      const int bc = order(at(b, j));
      if (ac != bc) {
        return ac - bc;
      }
      ++i;
      ++j;
    }
    while (at(a, i) == '0') {
      ++i;
    }
    while (at(b, j) == '0') {
      ++j;
    }
    // Digit runs compare as numbers of any length: the longer run wins, else the first
    // differing digit.
    while (is_digit(at(a, i)) && is_digit(at(b, j))) {
      if (first_diff == 0) {
        first_diff = at(a, i) - at(b, j);
      }
      ++i;
      ++j;
    }
    if (is_digit(at(a, i))) {
      return 1;
    }
    if (is_digit(at(b, j))) {
      return -1;
    }
    if (first_diff != 0) {
      return first_diff;
    }
  }
  return 0;
}

bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

} // namespace

std::optional<DebianVersion> parse_debian_version(std::string_view text) {
  while (!text.empty() && blank(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && blank(text.back())) {
    text.remove_suffix(1);
  }
  if (text.empty()) {
    return std::nullopt;
  }
  for (const char c : text) {
    if (blank(c)) {
      return std::nullopt;
    }
  }
  DebianVersion v;
  if (const size_t colon = text.find(':'); colon != std::string_view::npos) {
    const std::string_view epoch = text.substr(0, colon);
    if (epoch.empty()) {
      return std::nullopt;
    }
    const auto [end, ec] = std::from_chars(epoch.data(), epoch.data() + epoch.size(), v.epoch);
    if (ec != std::errc() || end != epoch.data() + epoch.size() || v.epoch > 0x7fffffffUL) {
      return std::nullopt;
    }
    text.remove_prefix(colon + 1);
  }
  if (const size_t dash = text.rfind('-'); dash != std::string_view::npos) {
    v.revision = std::string(text.substr(dash + 1));
    if (v.revision.empty()) {
      return std::nullopt;
    }
    text = text.substr(0, dash);
  }
  if (text.empty() || !is_digit(text.front())) {
    return std::nullopt;
  }
  v.upstream = std::string(text);
  auto allowed = [](char c, bool revision) {
    return is_digit(c) || is_alpha(c) || c == '.' || c == '+' || c == '~' ||
           (!revision && (c == '-' || c == ':'));
  };
  for (const char c : v.upstream) {
    if (!allowed(c, false)) {
      return std::nullopt;
    }
  }
  for (const char c : v.revision) {
    if (!allowed(c, true)) {
      return std::nullopt;
    }
  }
  return v;
}

int compare_debian_versions(const DebianVersion& a, const DebianVersion& b) {
  if (a.epoch != b.epoch) {
    return a.epoch < b.epoch ? -1 : 1;
  }
  if (const int r = verrevcmp(a.upstream, b.upstream); r != 0) {
    return r;
  }
  return verrevcmp(a.revision, b.revision);
}

int compare_debian_versions(std::string_view a, std::string_view b) {
  const auto va = parse_debian_version(a);
  const auto vb = parse_debian_version(b);
  if (!va || !vb) {
    return (va ? 1 : 0) - (vb ? 1 : 0);
  }
  return compare_debian_versions(*va, *vb);
}

} // namespace common
