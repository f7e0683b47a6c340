#include "common/store/names.hpp"

#include "common/base/sha256.hpp"

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
  // The kernel writes '/' as '!' but leaves a '!' in a name as it is, so decoding cannot tell
  // them apart: "a!..!..!usr!bin!passwd" is one file name, not a way up the tree. A real path
  // from the kernel never has "." or ".." components, so one here came from a '!': keep the
  // argument as it is rather than make up a path.
  for (size_t start = 0; start <= out.size();) {
    size_t end = out.find('/', start);
    if (end == std::string::npos) {
      end = out.size();
    }
    const std::string_view part = std::string_view(out).substr(start, end - start);
    if (part == "." || part == "..") {
      return std::string(raw);
    }
    start = end + 1;
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
