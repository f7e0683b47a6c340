// The one escaper for text that reaches a terminal or a log line. Host names, executable paths,
// comm, psargs, NT_FILE names and everything read back from the store are chosen by whoever
// crashed or by the store's owner; none of it may drive root's terminal or forge a log line.
#pragma once

#include <string>
#include <string_view>

namespace common {

// `s` made safe for one log line or one terminal cell: valid UTF-8 (each byte of an invalid
// sequence becomes U+FFFD), C0 and C1 controls and DEL written as \xNN, and the code points that
// reorder or break lines without being controls (U+2028/U+2029, the bidi overrides and
// isolates U+202A..U+202E, U+2066..U+2069) written as \u{NNNN}. Idempotent: escaping twice
// changes nothing more.
std::string printable(std::string_view s);

// Returns `s` as valid UTF-8: each byte of an invalid sequence becomes U+FFFD.
std::string to_valid_utf8(std::string_view s);

} // namespace common
