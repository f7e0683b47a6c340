#include "common/base/json_bounds.hpp"

namespace common {

std::string json_bounds_error(std::string_view text, size_t max_bytes, size_t max_depth) {
  if (text.size() > max_bytes) {
    return "larger than " + std::to_string(max_bytes) + " bytes";
  }
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i; // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
    case '"':
      in_string = true;
      break;
    case '[':
    case '{':
      if (++depth > max_depth) {
        return "nested deeper than " + std::to_string(max_depth) + " levels";
      }
      break;
    case ']':
    case '}':
      // Unbalanced closers are the parser's to reject; never wrap below zero.
      if (depth > 0) {
        --depth;
      }
      break;
    default:
      break;
    }
  }
  return {};
}

} // namespace common
