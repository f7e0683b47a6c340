#include "common/crash/runtime_frames.hpp"
#include "common/crash/signature.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using common::Frame;
using common::ResolvedSymbol;

namespace {

Frame named(const std::string& name, const std::string& module) {
  Frame f;
  f.pc = 0x1000;
  f.module = module;
  f.module_offset = 0x10;
  f.symbol = ResolvedSymbol{name, 0x4, true};
  return f;
}

constexpr const char* k_libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
constexpr const char* k_libjvm = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so";
constexpr const char* k_libruby = "/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1";
constexpr const char* k_libnode = "/usr/lib/x86_64-linux-gnu/libnode.so.108";

} // namespace

TEST_CASE("runtime crash paths are recognised in their runtime's module", "[signature]") {
  CHECK(common::is_runtime_crash_path("os::abort(bool, void*, void const*)", k_libjvm));
  CHECK(common::is_runtime_crash_path("VMError::report_and_die(int, char const*)", k_libjvm));
  CHECK(common::is_runtime_crash_path("rb_bug_for_fatal_signal", k_libruby));
  CHECK(common::is_runtime_crash_path("die", k_libruby));
  CHECK(common::is_runtime_crash_path("v8::base::OS::Abort()", k_libnode));
  CHECK(common::is_runtime_crash_path("runtime.raise.abi0", "/srv/app/server"));
  CHECK(common::is_runtime_crash_path("runtime.dieFromSignal", "/srv/app/server"));
  CHECK(common::is_runtime_crash_path("faulthandler_fatal_error", "/usr/bin/python3.11"));
  CHECK(common::is_runtime_crash_path("fatal_error", "/usr/bin/python3.11"));
  CHECK(common::is_runtime_crash_path(
      "google_breakpad::ExceptionHandler::SignalHandler(int, siginfo_t*, void*)", "/opt/app"));
  CHECK(common::is_runtime_crash_path("crashpad::CrashpadClient::StartHandler", "/opt/app"));
  CHECK(common::is_runtime_crash_path("sentry__backend_handle_signal", "/opt/app"));
}

TEST_CASE("generic names are a program's own outside their runtime", "[signature]") {
  // A program's own die() or fatal_error() is where its bug is reported: kept.
  CHECK_FALSE(common::is_runtime_crash_path("die", "/usr/bin/myserver"));
  CHECK_FALSE(common::is_runtime_crash_path("fatal_error", "/usr/bin/myserver"));
  CHECK_FALSE(common::is_runtime_crash_path("os::abort", "/usr/bin/myserver"));
  CHECK_FALSE(common::is_runtime_crash_path("sigsegv", k_libc));
  // Near misses of the table's names.
  CHECK_FALSE(common::is_runtime_crash_path("runtime.raisebadsignal", "/srv/app/server"));
  CHECK_FALSE(common::is_runtime_crash_path("main.(*Cache).lookup", "/srv/app/server"));
  CHECK_FALSE(common::is_runtime_crash_path("Unsafe_PutLong", k_libjvm));
  CHECK_FALSE(common::is_runtime_crash_path("rb_bugreport_extra", k_libruby));
}

TEST_CASE("signature v2 is taken below a runtime's fatal-error path", "[signature]") {
  SECTION("the JVM's fatal error: from the frame hs_err calls problematic") {
    const std::vector<Frame> frames = {
        named("__pthread_kill_implementation", k_libc),
        named("raise", k_libc),
        named("abort", k_libc),
        named("os::abort(bool, void*, void const*)", k_libjvm),
        named("VMError::report_and_die(int, char const*, char const*, __va_list_tag*, Thread*, "
              "unsigned char*, void*, void*, char const*, int, unsigned long)",
              k_libjvm),
        named("report_vm_error(char const*, int, char const*, char const*, ...)", k_libjvm),
        named("ObjectMonitor::enter(JavaThread*)", k_libjvm),
        named("ObjectSynchronizer::enter", k_libjvm),
        named("InterpreterRuntime::monitorenter", k_libjvm)};
    const auto s = common::signature_v2(6, frames, "/usr/lib/jvm/bin/java", "b:11");
    REQUIRE(s);
    CHECK(s->chain == std::vector<std::string>{"ObjectMonitor::enter", "ObjectSynchronizer::enter",
                                               "InterpreterRuntime::monitorenter"});
  }
  SECTION("two uncaught JavaScript errors' aborts differ by where they were thrown") {
    auto js_abort = [](const std::string& thrower) {
      return std::vector<Frame>{named("v8::base::OS::Abort()", k_libnode),
                                named("v8::internal::Isolate::CreateMessageOrAbort", k_libnode),
                                named("v8::internal::Isolate::ThrowInternal", k_libnode),
                                named(thrower, k_libnode),
                                named("node::LoadEnvironment", k_libnode),
                                named("node::Start", k_libnode)};
    };
    const auto a = common::signature_v2(6,
                                        js_abort("v8::internal::JsonParser<unsigned char>::"
                                                 "ReportUnexpectedToken"),
                                        "/usr/bin/node", "b:22");
    const auto b = common::signature_v2(6, js_abort("v8::internal::Runtime_ThrowTypeError"),
                                        "/usr/bin/node", "b:22");
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->chain.front() == "v8::internal::JsonParser<unsigned char>::ReportUnexpectedToken");
    CHECK(a->signature != b->signature);
  }
  SECTION("a Go fatal panic: from the function that faulted") {
    const std::vector<Frame> frames = {named("runtime.raise.abi0", "/srv/app/server"),
                                       named("runtime.dieFromSignal", "/srv/app/server"),
                                       named("runtime.crash", "/srv/app/server"),
                                       named("runtime.fatalpanic", "/srv/app/server"),
                                       named("runtime.gopanic", "/srv/app/server"),
                                       named("runtime.panicmem", "/srv/app/server"),
                                       named("runtime.sigpanic", "/srv/app/server"),
                                       named("main.(*Cache).lookup", "/srv/app/server"),
                                       named("main.handle", "/srv/app/server"),
                                       named("main.main", "/srv/app/server")};
    const auto s = common::signature_v2(11, frames, "/srv/app/server", "n:server");
    REQUIRE(s);
    CHECK(s->input == "v2|11|main.(*Cache).lookup|main.handle|main.main");
  }
  SECTION("a name of the table deeper in the stack is kept") {
    const std::vector<Frame> frames = {named("abort", k_libc), named("check", "/usr/bin/rt"),
                                       named("runtime.gopanic", "/usr/bin/rt"),
                                       named("main", "/usr/bin/rt")};
    const auto s = common::signature_v2(6, frames, "/usr/bin/rt", "b:33");
    REQUIRE(s);
    CHECK(s->chain == std::vector<std::string>{"check", "runtime.gopanic", "main"});
  }
}

TEST_CASE("a Go method's receiver is part of its name in the signature", "[signature]") {
  const std::vector<Frame> a = {named("main.(*Cache).lookup", "/srv/app/server"),
                                named("main.main", "/srv/app/server")};
  const std::vector<Frame> b = {named("main.(*Store).get", "/srv/app/server"),
                                named("main.main", "/srv/app/server")};
  const auto sa = common::signature_v2(11, a, "/srv/app/server", "n:server");
  const auto sb = common::signature_v2(11, b, "/srv/app/server", "n:server");
  REQUIRE(sa);
  REQUIRE(sb);
  CHECK(sa->chain.front() == "main.(*Cache).lookup");
  CHECK(sa->signature != sb->signature);
}
