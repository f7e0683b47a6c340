// Turning attacker-controlled names (%h, %E, comm, NT_FILE paths) into safe text and paths.
#pragma once

#include <string>
#include <string_view>

namespace common {

// Decodes the kernel's %E form: '!' stands for '/'. ("!usr!bin!ruby" → "/usr/bin/ruby")
// When the result would have a "." or ".." component (which only a '!' in a file name can
// produce), `raw` is returned unchanged: never a path that climbs the tree.
std::string decode_exe(std::string_view raw);

// Splits a trailing " (deleted)" (the kernel's mark for an unlinked executable) off `exe`;
// returns true when it was there.
bool strip_deleted_suffix(std::string& exe);

// A single, safe path component for a host name: only [A-Za-z0-9._+-], never starting with '.',
// at most 64 characters before the suffix. When anything had to change, "~" and 12 hex
// characters of SHA-256 of the raw name are appended, so distinct names never share a directory.
std::string host_component(std::string_view host);

// The same for an executable path: the leading '/' dropped and '/' written as '!'
// ("/usr/local/bin/ruby" → "usr!local!bin!ruby"), at most 120 characters before the suffix.
std::string exe_component(std::string_view exe);

// True when `name` is a component this module could have produced (used to skip foreign files).
bool is_safe_component(std::string_view name);

} // namespace common
