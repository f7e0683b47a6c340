#include "common/names.hpp"

#include "common/sha256.hpp"

namespace common {

namespace {

constexpr size_t k_max_host = 64;
constexpr size_t k_max_exe = 120;
constexpr size_t k_hash_chars = 12;

bool is_safe_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '+';
}

// Maps unsafe characters of `mapped` to '_' (keeping '!', our separator), bounds the length and
// appends the hash of `raw` when anything changed (`changed` says the caller already changed it).
std::string make_component(std::string_view raw, std::string_view mapped, size_t max_len,
                           bool changed) {
  std::string out;
  out.reserve(std::min(mapped.size(), max_len) + 1 + k_hash_chars);
  for (char c : mapped) {
    if (out.size() == max_len) {
      changed = true;
      break;
    }
    if (is_safe_char(c) || c == '!') {
      out += c;
    } else {
      out += '_';
      changed = true;
    }
  }
  // A leading '.' would hide the directory (and make "." and ".." possible).
  if (!out.empty() && out[0] == '.') {
    out[0] = '_';
    changed = true;
  }
  if (out.empty()) {
    out.push_back('_');
    changed = true;
  }
  if (changed) {
    out += '~';
    out += sha256_hex(raw, k_hash_chars);
  }
  return out;
}

} // namespace

std::string decode_exe(std::string_view raw) {
  std::string out(raw);
  for (char& c : out) {
    if (c == '!') {
      c = '/';
    }
  }
  return out;
}

bool strip_deleted_suffix(std::string& exe) {
  static constexpr std::string_view k_suffix = " (deleted)";
  if (exe.size() > k_suffix.size() && exe.ends_with(k_suffix)) {
    exe.resize(exe.size() - k_suffix.size());
    return true;
  }
  return false;
}

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
  const std::string valid = to_valid_utf8(s);
  std::string out;
  out.reserve(valid.size());
  static constexpr char k_hex[] = "0123456789abcdef";
  for (char c : valid) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      out += "\\x";
      out += k_hex[b >> 4];
      out += k_hex[b & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

std::string host_component(std::string_view host) {
  // '!' is no host character: make_component keeps it, so map it here and note the change.
  std::string mapped(host);
  bool changed = false;
  for (char& c : mapped) {
    if (c == '!') {
      c = '_';
      changed = true;
    }
  }
  return make_component(host, mapped, k_max_host, changed);
}

std::string exe_component(std::string_view exe) {
  // Only an absolute path with no '!' maps without loss; anything else gets the hash.
  bool changed = !exe.starts_with('/');
  std::string_view rest = changed ? exe : exe.substr(1);
  std::string mapped;
  mapped.reserve(rest.size());
  for (char c : rest) {
    if (c == '!') {
      mapped += '_';
      changed = true;
    } else {
      mapped += c == '/' ? '!' : c;
    }
  }
  return make_component(exe, mapped, k_max_exe, changed);
}

bool is_safe_component(std::string_view name) {
  if (name.empty() || name[0] == '.') {
    return false;
  }
  for (char c : name) {
    if (!is_safe_char(c) && c != '!' && c != '~') {
      return false;
    }
  }
  return true;
}

} // namespace common
