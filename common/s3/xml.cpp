#include "common/s3/xml.hpp"

#include <charconv>

namespace common::s3 {

namespace {

// The position just after the opening tag at or after `from`, or npos.
size_t find_open(std::string_view xml, std::string_view tag, size_t from, size_t& start) {
  const std::string open = "<" + std::string(tag);
  for (size_t p = xml.find(open, from); p != std::string_view::npos; p = xml.find(open, p + 1)) {
    const size_t after = p + open.size();
    if (after >= xml.size()) {
      return std::string_view::npos;
    }
    const char c = xml[after];
    if (c == '>' || c == ' ') {
      const size_t gt = xml.find('>', after);
      if (gt == std::string_view::npos) {
        return std::string_view::npos;
      }
      start = p;
      return gt + 1;
    }
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

} // namespace

std::optional<std::string_view> xml_text(std::string_view xml, std::string_view tag) {
  size_t start = 0;
  const size_t body = find_open(xml, tag, 0, start);
  if (body == std::string_view::npos) {
    return std::nullopt;
  }
  if (body >= 2 && xml[body - 2] == '/') {
    return std::string_view{}; // <tag/>
  }
  const size_t end = xml.find("</" + std::string(tag) + ">", body);
  if (end == std::string_view::npos) {
    return std::nullopt;
  }
  return xml.substr(body, end - body);
}

std::vector<std::string_view> xml_blocks(std::string_view xml, std::string_view tag) {
  std::vector<std::string_view> out;
  const std::string close = "</" + std::string(tag) + ">";
  size_t from = 0;
  for (;;) {
    size_t start = 0;
    const size_t body = find_open(xml, tag, from, start);
    if (body == std::string_view::npos) {
      break;
    }
    const size_t end = xml.find(close, body);
    if (end == std::string_view::npos) {
      break;
    }
    out.push_back(xml.substr(body, end - body));
    from = end + close.size();
  }
  return out;
}

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const size_t semi = s.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out += s[i];
      continue;
    }
    const std::string_view ent = s.substr(i + 1, semi - i - 1);
    if (ent == "amp") {
      out += '&';
    } else if (ent == "lt") {
      out += '<';
    } else if (ent == "gt") {
      out += '>';
    } else if (ent == "quot") {
      out += '"';
    } else if (ent == "apos") {
      out += '\'';
    } else if (ent.size() > 1 && ent[0] == '#') {
      const bool hex = ent[1] == 'x' || ent[1] == 'X';
      const std::string_view digits = ent.substr(hex ? 2 : 1);
      uint32_t cp = 0;
      const auto [p, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (ec != std::errc{} || p != digits.data() + digits.size() || cp == 0 || cp > 0x10ffff ||
          (cp >= 0xd800 && cp <= 0xdfff)) {
        out += s[i];
        continue;
      }
      append_utf8(out, cp);
    } else {
      out += s[i];
      continue;
    }
    i = semi;
  }
  return out;
}

} // namespace common::s3
