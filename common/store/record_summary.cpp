// Longer than our usual 400 lines: the lexer (strings, numbers, validating skip) and the record's
// field map share one private cursor class, and splitting them would publish a JSON lexer that
// nothing else should use instead of nlohmann.
#include "common/store/record_summary.hpp"

#include <charconv>
#include <cstring>
#include <system_error>

namespace common {

const std::string& SummaryValue::str_or_empty() const {
  static const std::string empty;
  return kind == JsonKind::string ? text : empty;
}

std::optional<int64_t> SummaryValue::as_int64() const {
  if (kind == JsonKind::integer) {
    return integer;
  }
  if (kind == JsonKind::unsigned_integer) {
    return static_cast<int64_t>(unsigned_integer);
  }
  return std::nullopt;
}

namespace {

// A cursor over the text. Every read checks `m_p < m_end` first: records come from a directory
// other users may write to, and a truncated or hostile one must only ever be an error.
class Reader {
public:
  Reader(std::string_view text, std::string& error)
      : m_begin(text.data()), m_p(text.data()), m_end(text.data() + text.size()), m_error(error) {}

  bool document(RecordSummary& out);

private:
  bool fail(const char* what) {
    m_error = std::string(what) + " at byte " + std::to_string(m_p - m_begin);
    return false;
  }
  bool at_end() const { return m_p >= m_end; }
  unsigned char peek() const { return static_cast<unsigned char>(*m_p); }
  void skip_whitespace() {
    while (m_p < m_end && (*m_p == ' ' || *m_p == '\n' || *m_p == '\r' || *m_p == '\t')) {
      ++m_p;
    }
  }

  bool string(std::string_view& result, bool keep);
  bool escape(std::string* out);
  bool hex4(uint32_t& v);
  bool utf8_sequence();
  bool number(SummaryValue* out);
  bool literal(std::string_view word);
  bool skip_value();
  bool value(SummaryValue& out);
  template <typename OnMember>
  bool object(OnMember on_member);

  bool core(RecordSummary::Core& core);
  bool crash(RecordSummary::Crash& crash);
  bool store(RecordSummary::Store& store);

  const char* m_begin;
  const char* m_p;
  const char* m_end;
  std::string& m_error;
  std::string m_decoded; // a string with escapes, decoded
  std::string m_stack;   // open containers while skipping: '{' or '['
};

bool Reader::hex4(uint32_t& v) {
  if (m_end - m_p < 4) {
    return fail("truncated \\u escape");
  }
  v = 0;
  for (int i = 0; i < 4; ++i) {
    const char c = *m_p++;
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v |= static_cast<uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v |= static_cast<uint32_t>(c - 'A' + 10);
    } else {
      --m_p;
      return fail("invalid hex digit in \\u escape");
    }
  }
  return true;
}

// One escape after its backslash; appends the decoded bytes to `out` when given.
bool Reader::escape(std::string* out) {
  if (at_end()) {
    return fail("truncated escape");
  }
  const char c = *m_p++;
  char simple = 0;
  switch (c) {
  case '"':
  case '\\':
  case '/':
    simple = c;
    break;
  case 'b':
    simple = '\b';
    break;
  case 'f':
    simple = '\f';
    break;
  case 'n':
    simple = '\n';
    break;
  case 'r':
    simple = '\r';
    break;
  case 't':
    simple = '\t';
    break;
  case 'u':
    break;
  default:
    --m_p;
    return fail("invalid escape");
  }
  if (c != 'u') {
    if (out != nullptr) {
      out->push_back(simple);
    }
    return true;
  }
  uint32_t cp = 0;
  if (!hex4(cp)) {
    return false;
  }
  // UTF-16 surrogates: a high one must be followed by an escaped low one, and a low one alone is
  // an error (nlohmann rejects both rather than substituting U+FFFD).
  if (cp >= 0xDC00 && cp <= 0xDFFF) {
    return fail("lone low surrogate in \\u escape");
  }
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (m_end - m_p < 2 || m_p[0] != '\\' || m_p[1] != 'u') {
      return fail("high surrogate not followed by a \\u escape");
    }
    m_p += 2;
    uint32_t low = 0;
    if (!hex4(low)) {
      return false;
    }
    if (low < 0xDC00 || low > 0xDFFF) {
      return fail("high surrogate not followed by a low surrogate");
    }
    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
  }
  if (out == nullptr) {
    return true;
  }
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return true;
}

// One multi-byte UTF-8 sequence at m_p, checked against the well-formed table of Unicode §3.9
// (Table 3-7), which is what nlohmann's lexer enforces: no overlong forms, no surrogates, nothing
// above U+10FFFF.
bool Reader::utf8_sequence() {
  const unsigned char lead = peek();
  size_t trail = 0;
  unsigned char lo = 0x80, hi = 0xBF; // range of the first continuation byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    trail = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    trail = 2;
    lo = lead == 0xE0 ? 0xA0 : 0x80;
    hi = lead == 0xED ? 0x9F : 0xBF;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    trail = 3;
    lo = lead == 0xF0 ? 0x90 : 0x80;
    hi = lead == 0xF4 ? 0x8F : 0xBF;
  } else {
    return fail("invalid UTF-8 in string");
  }
  if (static_cast<size_t>(m_end - m_p) <= trail) {
    return fail("truncated UTF-8 sequence in string");
  }
  for (size_t i = 1; i <= trail; ++i) {
    const auto c = static_cast<unsigned char>(m_p[i]);
    if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xBF)) {
      return fail("invalid UTF-8 in string");
    }
  }
  m_p += trail + 1;
  return true;
}

// A string at its opening quote. `result` views the input when the string has no escapes (the
// common case), else m_decoded; with keep == false escapes are only validated.
bool Reader::string(std::string_view& result, bool keep) {
  ++m_p; // the opening quote, checked by the caller
  const char* start = m_p;
  bool decoding = false;
  for (;;) {
    if (at_end()) {
      return fail("unterminated string");
    }
    const unsigned char c = peek();
    if (c == '"') {
      if (!decoding) {
        result = std::string_view(start, static_cast<size_t>(m_p - start));
      } else {
        if (keep) {
          m_decoded.append(start, m_p);
        }
        result = m_decoded;
      }
      ++m_p;
      return true;
    }
    if (c == '\\') {
      if (keep) {
        if (!decoding) {
          m_decoded.clear();
        }
        m_decoded.append(start, m_p);
      }
      decoding = true;
      ++m_p;
      if (!escape(keep ? &m_decoded : nullptr)) {
        return false;
      }
      start = m_p;
    } else if (c < 0x20) {
      return fail("control character in string");
    } else if (c < 0x80) {
      ++m_p;
    } else if (!utf8_sequence()) {
      return false;
    }
  }
}

bool Reader::literal(std::string_view word) {
  if (static_cast<size_t>(m_end - m_p) < word.size() ||
      std::memcmp(m_p, word.data(), word.size()) != 0) {
    return fail("invalid literal");
  }
  m_p += word.size();
  return true;
}

// A number at m_p: JSON's grammar, then nlohmann's types (see JsonKind). `out` may be null.
bool Reader::number(SummaryValue* out) {
  const char* start = m_p;
  const bool negative = *m_p == '-';
  if (negative) {
    ++m_p;
  }
  auto digits = [&] {
    const char* d = m_p;
    while (m_p < m_end && *m_p >= '0' && *m_p <= '9') {
      ++m_p;
    }
    return static_cast<size_t>(m_p - d);
  };
  const char* int_start = m_p;
  if (at_end() || *m_p < '0' || *m_p > '9') {
    return fail("invalid number: expected a digit");
  }
  // A leading zero is a whole integer part: "01" is the number 0 followed by junk.
  const size_t int_digits = *m_p == '0' ? (++m_p, size_t{1}) : digits();
  bool is_float = false;
  const char* frac_start = nullptr;
  if (m_p < m_end && *m_p == '.') {
    ++m_p;
    frac_start = m_p;
    if (digits() == 0) {
      return fail("invalid number: expected a digit after '.'");
    }
    is_float = true;
  }
  const char* frac_end = m_p;
  int64_t exponent = 0;
  if (m_p < m_end && (*m_p == 'e' || *m_p == 'E')) {
    ++m_p;
    bool exp_negative = false;
    if (m_p < m_end && (*m_p == '+' || *m_p == '-')) {
      exp_negative = *m_p == '-';
      ++m_p;
    }
    const char* exp_start = m_p;
    if (digits() == 0) {
      return fail("invalid number: expected a digit in the exponent");
    }
    for (const char* d = exp_start; d < m_p && exponent < 1'000'000'000; ++d) {
      exponent = exponent * 10 + (*d - '0'); // saturates: only its sign and size matter below
    }
    exponent = exp_negative ? -exponent : exponent;
    is_float = true;
  }
  if (out == nullptr) {
    // Skipped numbers must still be rejected where nlohmann rejects them (overflow to inf).
    if (!is_float && int_digits < 20) {
      return true;
    }
    SummaryValue scratch;
    m_p = start;
    return number(&scratch);
  }
  const char* end = m_p;
  if (!is_float) {
    if (negative) {
      int64_t v = 0;
      if (std::from_chars(start, end, v).ec == std::errc()) {
        out->kind = JsonKind::integer;
        out->integer = v;
        return true;
      }
    } else {
      uint64_t v = 0;
      if (std::from_chars(start, end, v).ec == std::errc()) {
        out->kind = JsonKind::unsigned_integer;
        out->unsigned_integer = v;
        return true;
      }
    }
    // Out of range: nlohmann falls back to a double, as below.
  }
  double v = 0;
  const auto [ptr, ec] = std::from_chars(start, end, v);
  if (ec == std::errc::result_out_of_range) {
    // Overflow (an error: nlohmann refuses a number that is not finite) or underflow (accepted
    // as zero, like strtod). Which one follows from the decimal magnitude of the first
    // significant digit; out of range means it is far from zero either way.
    int64_t magnitude = INT64_MIN / 2; // the mantissa is zero
    if (!(int_digits == 1 && *int_start == '0')) {
      magnitude = static_cast<int64_t>(int_digits);
    } else if (frac_start != nullptr) {
      const char* d = frac_start;
      while (d < frac_end && *d == '0') {
        ++d;
      }
      magnitude = d == frac_end ? INT64_MIN / 2 : -static_cast<int64_t>(d - frac_start);
    }
    if (magnitude != INT64_MIN / 2 && magnitude + exponent > 0) {
      m_p = start;
      return fail("number overflows a double");
    }
    v = negative ? -0.0 : 0.0;
  } else if (ec != std::errc() || ptr != end) {
    m_p = start;
    return fail("invalid number");
  }
  out->kind = JsonKind::floating;
  out->floating = v;
  return true;
}

// Validates and skips one value of any kind. Containers are walked with an explicit stack, so
// hostile nesting depth costs memory proportional to the input, never the call stack.
bool Reader::skip_value() {
  m_stack.clear();
  for (;;) {
    // A value is expected here.
    skip_whitespace();
    if (at_end()) {
      return fail("unexpected end of input");
    }
    bool opened = false;
    switch (*m_p) {
    case '{':
    case '[': {
      const char open = *m_p++;
      skip_whitespace();
      if (m_p < m_end && *m_p == (open == '{' ? '}' : ']')) {
        ++m_p; // empty container: a complete value
      } else {
        m_stack.push_back(open);
        opened = true;
        if (open == '{') {
          std::string_view key;
          if (at_end() || *m_p != '"') {
            return fail("expected a key");
          }
          if (!string(key, false)) {
            return false;
          }
          skip_whitespace();
          if (at_end() || *m_p != ':') {
            return fail("expected ':'");
          }
          ++m_p;
        }
      }
      break;
    }
    case '"': {
      std::string_view s;
      if (!string(s, false)) {
        return false;
      }
      break;
    }
    case 't':
      if (!literal("true")) {
        return false;
      }
      break;
    case 'f':
      if (!literal("false")) {
        return false;
      }
      break;
    case 'n':
      if (!literal("null")) {
        return false;
      }
      break;
    default:
      if (*m_p != '-' && (*m_p < '0' || *m_p > '9')) {
        return fail("expected a value");
      }
      if (!number(nullptr)) {
        return false;
      }
    }
    if (opened) {
      continue;
    }
    // After a complete value: close containers until one continues with ','.
    for (;;) {
      if (m_stack.empty()) {
        return true;
      }
      skip_whitespace();
      if (at_end()) {
        return fail("unexpected end of input");
      }
      const char in = m_stack.back();
      if (*m_p == (in == '{' ? '}' : ']')) {
        ++m_p;
        m_stack.pop_back();
        continue;
      }
      if (*m_p != ',') {
        return fail(in == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
      }
      ++m_p;
      if (in == '{') {
        skip_whitespace();
        std::string_view key;
        if (at_end() || *m_p != '"') {
          return fail("expected a key");
        }
        if (!string(key, false)) {
          return false;
        }
        skip_whitespace();
        if (at_end() || *m_p != ':') {
          return fail("expected ':'");
        }
        ++m_p;
      }
      break;
    }
  }
}

// One value into `out`: scalars are kept, containers only validated.
bool Reader::value(SummaryValue& out) {
  out = SummaryValue{};
  skip_whitespace();
  if (at_end()) {
    return fail("unexpected end of input");
  }
  switch (*m_p) {
  case '"': {
    std::string_view s;
    if (!string(s, true)) {
      return false;
    }
    out.kind = JsonKind::string;
    out.text.assign(s);
    return true;
  }
  case 't':
  case 'f':
    out.kind = JsonKind::boolean;
    out.boolean = *m_p == 't';
    return literal(out.boolean ? "true" : "false");
  case 'n':
    out.kind = JsonKind::null;
    return literal("null");
  case '{':
  case '[':
    out.kind = *m_p == '{' ? JsonKind::object : JsonKind::array;
    return skip_value();
  default:
    if (*m_p != '-' && (*m_p < '0' || *m_p > '9')) {
      return fail("expected a value");
    }
    return number(&out);
  }
}

// An object at m_p; calls on_member(key) with m_p at each member's value, which it must consume.
template <typename OnMember>
bool Reader::object(OnMember on_member) {
  ++m_p; // '{', checked by the caller
  skip_whitespace();
  if (m_p < m_end && *m_p == '}') {
    ++m_p;
    return true;
  }
  for (;;) {
    skip_whitespace();
    if (at_end() || *m_p != '"') {
      return fail("expected a key");
    }
    std::string_view key;
    if (!string(key, true)) {
      return false;
    }
    skip_whitespace();
    if (at_end() || *m_p != ':') {
      return fail("expected ':'");
    }
    ++m_p;
    if (!on_member(key)) {
      return false;
    }
    skip_whitespace();
    if (at_end()) {
      return fail("unexpected end of input");
    }
    if (*m_p == '}') {
      ++m_p;
      return true;
    }
    if (*m_p != ',') {
      return fail("expected ',' or '}'");
    }
    ++m_p;
  }
}

// The sections below are read member by member when they are objects, else kept as a kind only.
// A repeated key replaces the earlier value, as in nlohmann.
bool Reader::core(RecordSummary::Core& c) {
  c = RecordSummary::Core{};
  skip_whitespace();
  if (at_end() || *m_p != '{') {
    return value(c.self);
  }
  c.self.kind = JsonKind::object;
  return object([&](std::string_view key) {
    SummaryValue* field = key == "present"       ? &c.present
                          : key == "reason"      ? &c.reason
                          : key == "size"        ? &c.size
                          : key == "stored_size" ? &c.stored_size
                          : key == "truncated"   ? &c.truncated
                          : key == "removed"     ? &c.removed
                          : key == "path"        ? &c.path
                                                 : nullptr;
    return field != nullptr ? value(*field) : skip_value();
  });
}

bool Reader::crash(RecordSummary::Crash& c) {
  c = RecordSummary::Crash{};
  skip_whitespace();
  if (at_end() || *m_p != '{') {
    return value(c.self);
  }
  c.self.kind = JsonKind::object;
  return object([&](std::string_view key) {
    if (key == "symbol") {
      c.symbol_name = {};
      c.symbol_offset = {};
      skip_whitespace();
      if (at_end() || *m_p != '{') {
        return value(c.symbol);
      }
      c.symbol = {};
      c.symbol.kind = JsonKind::object;
      return object([&](std::string_view k) {
        SummaryValue* field = k == "name"     ? &c.symbol_name
                              : k == "offset" ? &c.symbol_offset
                                              : nullptr;
        return field != nullptr ? value(*field) : skip_value();
      });
    }
    SummaryValue* field = key == "signature"         ? &c.signature
                          : key == "signature_chain" ? &c.signature_chain
                          : key == "module"          ? &c.module
                          : key == "module_offset"   ? &c.module_offset
                          : key == "si_code_name"    ? &c.si_code_name
                          : key == "fault_address"   ? &c.fault_address
                                                     : nullptr;
    return field != nullptr ? value(*field) : skip_value();
  });
}

bool Reader::store(RecordSummary::Store& s) {
  s = RecordSummary::Store{};
  skip_whitespace();
  if (at_end() || *m_p != '{') {
    return value(s.self);
  }
  s.self.kind = JsonKind::object;
  return object([&](std::string_view key) {
    SummaryValue* field = key == "host" ? &s.host : key == "executable" ? &s.executable : nullptr;
    return field != nullptr ? value(*field) : skip_value();
  });
}

bool Reader::document(RecordSummary& out) {
  out = RecordSummary{};
  // nlohmann accepts (and skips) a UTF-8 byte order mark, and rejects any other 0xEF start.
  if (m_p < m_end && peek() == 0xEF) {
    if (m_end - m_p < 3 || static_cast<unsigned char>(m_p[1]) != 0xBB ||
        static_cast<unsigned char>(m_p[2]) != 0xBF) {
      return fail("invalid byte order mark");
    }
    m_p += 3;
  }
  skip_whitespace();
  if (at_end()) {
    return fail("empty input");
  }
  if (*m_p != '{') {
    // Still validated, so the message tells "not JSON" from "not a record".
    SummaryValue top;
    if (!value(top)) {
      return false;
    }
    m_p = m_begin;
    return fail("record is not a JSON object");
  }
  const bool ok = object([&](std::string_view key) {
    if (key.empty()) {
      return skip_value();
    }
    // Keys are checked by their first byte first: most keys of a record are not ours.
    switch (key.front()) {
    case 'c':
      if (key == "core") {
        return core(out.core);
      }
      if (key == "crash") {
        return crash(out.crash);
      }
      if (key == "comm") {
        return value(out.comm);
      }
      break;
    case 'e':
      if (key == "executable") {
        return value(out.executable);
      }
      if (key == "executable_deleted") {
        return value(out.executable_deleted);
      }
      break;
    case 'h':
      if (key == "hostname") {
        return value(out.hostname);
      }
      break;
    case 'i':
      if (key == "id") {
        return value(out.id);
      }
      break;
    case 'p':
      if (key == "pid") {
        return value(out.pid);
      }
      break;
    case 's':
      if (key == "schema") {
        return value(out.schema);
      }
      if (key == "signal") {
        return value(out.signal);
      }
      if (key == "signal_name") {
        return value(out.signal_name);
      }
      if (key == "store") {
        return store(out.store);
      }
      break;
    case 't':
      if (key == "time") {
        return value(out.time);
      }
      break;
    case 'u':
      if (key == "uid") {
        return value(out.uid);
      }
      break;
    default:
      break;
    }
    return skip_value();
  });
  if (!ok) {
    return false;
  }
  skip_whitespace();
  // nlohmann's lexer takes a NUL byte where a token may start as the end of input (for C string
  // literals), so a record followed by NUL padding is valid there and must be here.
  if (!at_end() && *m_p != '\0') {
    return fail("unexpected bytes after the record");
  }
  return true;
}

} // namespace

bool read_record_summary(std::string_view text, RecordSummary& out, std::string& error) {
  Reader reader(text, error);
  if (!reader.document(out)) {
    out = RecordSummary{};
    return false;
  }
  return true;
}

} // namespace common
