#include "common/base/escape.hpp"

#include "common/base/hex.hpp"

#include <algorithm>
#include <cstdint>

namespace common {

namespace {

// Decodes the code point starting at s[i] of valid UTF-8; sets `len` to its length.
uint32_t code_point_at(std::string_view s, size_t i, size_t& len) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    len = 1;
    return c;
  }
  len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
  uint32_t cp = len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  }
  return cp;
}

// Line and paragraph separators end a line for some viewers; the bidi controls make a terminal
// show text in another order than it is (the "Trojan Source" trick).
bool is_invisible_reorder(uint32_t cp) {
  return cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

} // namespace

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t min = 0;
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      min = 0x10000;
    }
    bool ok = len != 0 && i + len <= s.size();
    uint32_t cp = len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) {
        ok = false;
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) {
      ok = false;
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

std::string printable(std::string_view s) {
  // Most text is printable ASCII, which stays as it is: one scan, one copy.
  if (std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) {
    return std::string(s);
  }
  const std::string valid = to_valid_utf8(s);
  std::string out;
  out.reserve(valid.size());
  size_t len = 0;
  for (size_t i = 0; i < valid.size(); i += len) {
    const uint32_t cp = code_point_at(valid, i, len);
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f)) {
      out += "\\x" + hex_digits(cp, 2);
    } else if (is_invisible_reorder(cp)) {
      out += "\\u{" + hex_digits(cp, 4) + "}";
    } else {
      out.append(valid, i, len);
    }
  }
  return out;
}

} // namespace common
