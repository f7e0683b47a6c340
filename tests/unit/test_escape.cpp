#include "common/base/escape.hpp"
#include "common/base/json_bounds.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace common;

TEST_CASE("printable escapes what drives a terminal or forges a log line", "[escape]") {
  CHECK(printable("web01 /usr/bin/ünïcode") == "web01 /usr/bin/ünïcode");
  CHECK(printable("h\nJan  1 sshd[1]: Accepted") == "h\\x0aJan  1 sshd[1]: Accepted");
  CHECK(printable("\x1b]0;TITLE\x07") == "\\x1b]0;TITLE\\x07");
  CHECK(printable("a\x1b[31mb\x7f") == "a\\x1b[31mb\\x7f");
  CHECK(printable("c1 \xc2\x9b"
                  "31m") == "c1 \\x9b31m"); // U+009B is CSI to an 8-bit terminal
  CHECK(printable("caf\xc3\xa9 \xff") == "caf\xc3\xa9 \xef\xbf\xbd");
  // Bidi overrides and line separators reorder or split text without being controls.
  CHECK(printable("a\u202eb\u2066c\u2028d") == "a\\u{202e}b\\u{2066}c\\u{2028}d");
  CHECK(printable("\xe2\x80") == "\xef\xbf\xbd\xef\xbf\xbd"); // a cut-off sequence
}

TEST_CASE("printable is idempotent and its output has no controls", "[escape]") {
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all += static_cast<char>(b);
  }
  all += "\u202e\u2029";
  const std::string once = printable(all);
  CHECK(printable(once) == once);
  for (char ch : once) {
    const auto c = static_cast<unsigned char>(ch);
    CHECK((c >= 0x20 && c != 0x7f));
  }
  CHECK(once.find("\xc2\x80") == std::string::npos);
}

TEST_CASE("invalid UTF-8 is replaced, valid text is kept", "[escape]") {
  CHECK(to_valid_utf8("héllo ✓") == "héllo ✓");
  CHECK(to_valid_utf8("a\xff"
                      "b") == "a\xef\xbf\xbd"
                              "b");
  CHECK(to_valid_utf8("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");                 // overlong '/'
  CHECK(to_valid_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); // surrogate
  CHECK(to_valid_utf8("\xe2\x9c") == "\xef\xbf\xbd\xef\xbf\xbd");                 // cut short
}

TEST_CASE("JSON bounds: depth and size before any DOM", "[escape]") {
  CHECK(json_bounds_error(R"({"a": [1, {"b": []}], "s": "[[[[{{{{"})", 100).empty());
  CHECK(json_bounds_error(std::string(64, '[') + std::string(64, ']'), 1000).empty());
  CHECK(json_bounds_error(std::string(65, '[') + std::string(65, ']'), 1000) ==
        "nested deeper than 64 levels");
  CHECK(json_bounds_error(std::string(1000000, '['), 2000000) == "nested deeper than 64 levels");
  CHECK(json_bounds_error(std::string(10, ' '), 9) == "larger than 9 bytes");
  // Escaped quotes do not end a string; brackets in strings never count.
  CHECK(json_bounds_error("[\"\\\"" + std::string(100, '[') + "\"]", 1000).empty());
  CHECK(json_bounds_error("]]]]" + std::string(64, '['), 1000).empty()); // never wraps below 0
  CHECK(json_bounds_error("{\"a\":" + std::string(3, '{'), 1000, 3) ==
        "nested deeper than 3 levels");
}
