#include "common/crash/runtime_frames.hpp"

#include <array>

namespace common {

namespace {

enum class Match { exact, prefix };

struct CrashPathFrame {
  std::string_view module; // basename prefix of the module the name must be in; "" for any
  Match match;
  std::string_view name;
};

// Each runtime's path from "the process is dying" to abort() or the re-raised signal, as its
// sources name it. Handler frames above a kernel signal frame are cut before this table is
// consulted (analysis: the original fault); these are the frames with no signal frame below
// them — a runtime's fatal error, a throw that aborts — and those of the handlers that re-raise
// from a frame the unwinder cannot see through. Only the top of the stack is skipped, so a
// name here deeper in a backtrace is kept.
constexpr std::array k_crash_path = {
    // V8 (node, libnode): an uncaught exception under --abort-on-uncaught-exception, a CHECK,
    // an out-of-memory; node's own fatal-error path.
    CrashPathFrame{"", Match::exact, "v8::base::OS::Abort"},
    CrashPathFrame{"", Match::exact, "v8::internal::Isolate::CreateMessageOrAbort"},
    CrashPathFrame{"", Match::exact, "v8::internal::Isolate::Throw"},
    CrashPathFrame{"", Match::exact, "v8::internal::Isolate::ThrowInternal"},
    CrashPathFrame{"", Match::exact, "v8::internal::Isolate::ThrowAt"},
    CrashPathFrame{"", Match::exact, "v8::internal::Isolate::ReThrow"},
    CrashPathFrame{"", Match::exact, "v8::internal::Runtime_Throw"},
    CrashPathFrame{"", Match::exact, "v8::internal::Runtime_ReThrow"},
    CrashPathFrame{"", Match::exact, "V8_Fatal"},
    CrashPathFrame{"", Match::exact, "v8::internal::V8::FatalProcessOutOfMemory"},
    CrashPathFrame{"", Match::exact, "v8::Utils::ReportOOMFailure"},
    CrashPathFrame{"", Match::exact, "node::Abort"},
    CrashPathFrame{"", Match::exact, "node::Assert"},
    CrashPathFrame{"", Match::exact, "node::OnFatalError"},
    CrashPathFrame{"", Match::exact, "node::OOMErrorHandler"},
    // HotSpot (libjvm): the fatal-error reporter (hs_err) and the signal handler that calls it;
    // what is left below is hs_err's "Problematic frame".
    CrashPathFrame{"libjvm.so", Match::exact, "os::abort"},
    CrashPathFrame{"libjvm.so", Match::exact, "os::die"},
    CrashPathFrame{"libjvm.so", Match::prefix, "VMError::"},
    CrashPathFrame{"libjvm.so", Match::exact, "report_vm_error"},
    CrashPathFrame{"libjvm.so", Match::exact, "report_fatal"},
    CrashPathFrame{"libjvm.so", Match::exact, "report_vm_out_of_memory"},
    CrashPathFrame{"libjvm.so", Match::exact, "report_vm_status_error"},
    CrashPathFrame{"libjvm.so", Match::exact, "JVM_handle_linux_signal"},
    CrashPathFrame{"libjvm.so", Match::exact, "signalHandler"},
    CrashPathFrame{"libjvm.so", Match::exact, "javaSignalHandler"},
    CrashPathFrame{"libjvm.so", Match::prefix, "PosixSignals::"},
    // Ruby (libruby): rb_bug's report, the fatal-signal handlers, die().
    CrashPathFrame{"libruby", Match::exact, "rb_bug"},
    CrashPathFrame{"libruby", Match::exact, "rb_bug_for_fatal_signal"},
    CrashPathFrame{"libruby", Match::exact, "rb_bug_errno"},
    CrashPathFrame{"libruby", Match::exact, "rb_vm_bugreport"},
    CrashPathFrame{"libruby", Match::exact, "rb_fatal"},
    CrashPathFrame{"libruby", Match::exact, "sigsegv"},
    CrashPathFrame{"libruby", Match::exact, "sigbus"},
    CrashPathFrame{"libruby", Match::exact, "sigill"},
    CrashPathFrame{"libruby", Match::exact, "die"},
    CrashPathFrame{"libruby", Match::exact, "ruby_abort"},
    // Go (the executable, or a c-shared library): the signal handler, a fatal panic or throw
    // and the crash that GOTRACEBACK=crash asks for. Assembly functions carry ".abi0".
    CrashPathFrame{"", Match::exact, "runtime.raise"},
    CrashPathFrame{"", Match::exact, "runtime.raiseproc"},
    CrashPathFrame{"", Match::exact, "runtime.tgkill"},
    CrashPathFrame{"", Match::exact, "runtime.dieFromSignal"},
    CrashPathFrame{"", Match::exact, "runtime.crash"},
    CrashPathFrame{"", Match::exact, "runtime.abort"},
    CrashPathFrame{"", Match::exact, "runtime.sighandler"},
    CrashPathFrame{"", Match::exact, "runtime.sigfwdgo"},
    CrashPathFrame{"", Match::exact, "runtime.sigtrampgo"},
    CrashPathFrame{"", Match::exact, "runtime.sigtramp"},
    CrashPathFrame{"", Match::exact, "runtime.cgoSigtramp"},
    CrashPathFrame{"", Match::exact, "runtime.fatalpanic"},
    CrashPathFrame{"", Match::exact, "runtime.fatalthrow"},
    CrashPathFrame{"", Match::exact, "runtime.fatal"},
    CrashPathFrame{"", Match::exact, "runtime.throw"},
    CrashPathFrame{"", Match::exact, "runtime.startpanic_m"},
    CrashPathFrame{"", Match::exact, "runtime.gopanic"},
    CrashPathFrame{"", Match::exact, "runtime.sigpanic"},
    CrashPathFrame{"", Match::exact, "runtime.panicmem"},
    CrashPathFrame{"", Match::exact, "runtime.panicmemAddr"},
    CrashPathFrame{"", Match::exact, "runtime.systemstack"},
    CrashPathFrame{"", Match::exact, "runtime.mcall"},
    // CPython (the python executable or libpython): faulthandler, Py_FatalError.
    CrashPathFrame{"", Match::prefix, "faulthandler_"},
    CrashPathFrame{"", Match::exact, "_Py_DumpTraceback"},
    CrashPathFrame{"", Match::exact, "_Py_DumpTracebackThreads"},
    CrashPathFrame{"", Match::exact, "Py_FatalError"},
    CrashPathFrame{"", Match::exact, "_Py_FatalErrorFunc"},
    CrashPathFrame{"", Match::exact, "_Py_FatalErrorFormat"},
    CrashPathFrame{"python", Match::exact, "fatal_error"},
    CrashPathFrame{"python", Match::exact, "fatal_error_exit"},
    CrashPathFrame{"libpython", Match::exact, "fatal_error"},
    CrashPathFrame{"libpython", Match::exact, "fatal_error_exit"},
    // Crash reporters linked into programs: all of their code is reporting.
    CrashPathFrame{"", Match::prefix, "google_breakpad::"},
    CrashPathFrame{"", Match::prefix, "crashpad::"},
    CrashPathFrame{"", Match::prefix, "sentry__"},
    CrashPathFrame{"", Match::exact, "sentry_handle_exception"},
};

std::string_view basename_of(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

} // namespace

bool is_runtime_crash_path(std::string_view function, std::string_view module) {
  // A C++ parameter list is not part of the name; a Go receiver (`pkg.(*T).m`) is.
  size_t paren = function.find('(');
  while (paren != std::string_view::npos && paren > 0 && function[paren - 1] == '.') {
    paren = function.find('(', paren + 1);
  }
  if (paren != std::string_view::npos && paren > 0) {
    function = function.substr(0, paren);
  }
  // Go's assembly functions are in the symbol table under their ABI wrapper's name.
  if (function.ends_with(".abi0")) {
    function.remove_suffix(5);
  }
  const std::string_view base = basename_of(module);
  for (const CrashPathFrame& e : k_crash_path) {
    if (!base.starts_with(e.module)) {
      continue;
    }
    if (e.match == Match::exact ? function == e.name : function.starts_with(e.name)) {
      return true;
    }
  }
  return false;
}

} // namespace common
