// The crash and fatal-error paths of language runtimes and crash reporters: the frames a
// runtime's own handler puts on the stack while it reports a crash and aborts (V8's OS::Abort,
// the JVM's VMError::report_and_die, Ruby's rb_bug, Go's dieFromSignal, Python's faulthandler,
// Breakpad, Crashpad, sentry-native). They say which runtime died, not where the bug is, so
// signature v2 skips them like raise/abort. The table is in runtime_frames.cpp and
// docs/record-crash.md.
#pragma once

#include <string_view>

namespace common {

// Whether `function` (a symbol name, demangled, parameters ignored) in the module mapped from
// `module` (an NT_FILE path) is a runtime's or a crash reporter's crash path. Names generic
// enough to be a program's own (Ruby's `die`, Python's `fatal_error`) count only in that
// runtime's module.
bool is_runtime_crash_path(std::string_view function, std::string_view module);

} // namespace common
