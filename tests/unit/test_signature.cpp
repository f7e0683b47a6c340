#include "common/crash/signature.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using common::Frame;
using common::ResolvedSymbol;

namespace {

Frame named(const std::string& name, const std::string& module = "/usr/lib/libc.so.6") {
  Frame f;
  f.pc = 0x1000;
  f.module = module;
  f.module_offset = 0x10;
  f.symbol = ResolvedSymbol{name, 0x4, true};
  return f;
}

Frame anonymous(const std::string& module, uint64_t offset, const std::string& build_id = "") {
  Frame f;
  f.pc = 0x2000;
  f.module = module;
  f.module_offset = offset;
  f.build_id = build_id;
  return f;
}

} // namespace

TEST_CASE("signature v2 skips the crash machinery", "[signature]") {
  const std::vector<Frame> frames = {
      named("__pthread_kill_implementation"),
      named("__GI_raise"),
      named("__GI_abort"),
      anonymous("/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30", 0x9d919),
      named("std::terminate()", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"),
      named("__cxa_throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"),
      named("zoo::parse_config(std::string const&)", "/usr/bin/zoo"),
      named("zoo::load", "/usr/bin/zoo"),
      named("main", "/usr/bin/zoo"),
      named("__libc_start_call_main")};
  const auto s = common::signature_v2(6, frames, "/usr/bin/zoo", "b:aa");
  REQUIRE(s);
  CHECK(s->chain == std::vector<std::string>{"zoo::parse_config", "zoo::load", "main"});
  CHECK(s->input == "v2|6|zoo::parse_config|zoo::load|main");
  CHECK(s->signature.size() == 16);
}

TEST_CASE("signature v2 is stable across addresses and differs by function", "[signature]") {
  std::vector<Frame> a = {named("abort"), named("check_input", "/usr/bin/a"),
                          named("main", "/usr/bin/a")};
  std::vector<Frame> b = a;
  for (auto& f : b) {
    f.pc += 0x7f0000000000; // another ASLR layout
  }
  CHECK(common::signature_v2(6, a, "/usr/bin/a", "b:1")->signature ==
        common::signature_v2(6, b, "/usr/bin/a", "b:1")->signature);
  b[1].symbol->name = "check_output";
  CHECK(common::signature_v2(6, a, "/usr/bin/a", "b:1")->signature !=
        common::signature_v2(6, b, "/usr/bin/a", "b:1")->signature);
  // The signal takes part.
  CHECK(common::signature_v2(6, a, "/usr/bin/a", "b:1")->signature !=
        common::signature_v2(11, a, "/usr/bin/a", "b:1")->signature);
}

TEST_CASE("the executable joins when every frame is in a shared library", "[signature]") {
  // Two interpreters aborting in the same library code: different programs, different bugs.
  const std::vector<Frame> frames = {named("abort"), named("lib_fail", "/usr/lib/libx.so"),
                                     named("lib_call", "/usr/lib/libx.so"),
                                     named("lib_entry", "/usr/lib/libx.so")};
  const auto p = common::signature_v2(6, frames, "/usr/bin/python3", "b:py");
  const auto r = common::signature_v2(6, frames, "/usr/bin/ruby", "b:rb");
  CHECK(p->input == "v2|6|lib_fail|lib_call|lib_entry|exe:b:py");
  CHECK(p->signature != r->signature);
  // A frame of the executable among the three: the executable's id stays out (the same code
  // built into two hosts' packages still groups by function names).
  std::vector<Frame> with_exe = frames;
  with_exe[2] = named("handler", "/usr/bin/python3");
  CHECK(common::signature_v2(6, with_exe, "/usr/bin/python3", "b:py")->input ==
        "v2|6|lib_fail|handler|lib_entry");
}

TEST_CASE("frames without names use build-id + offset, else file name + offset", "[signature]") {
  const std::vector<Frame> frames = {anonymous("/opt/app/bin/app", 0x1139, "deadbeef"),
                                     anonymous("/opt/app/lib/libz.so (deleted)", 0x42)};
  const auto s = common::signature_v2(11, frames, "/opt/app/bin/app", "b:deadbeef");
  CHECK(s->chain == std::vector<std::string>{"b:deadbeef+0x1139", "n:libz.so+0x42"});
}

TEST_CASE("crash machinery names", "[signature]") {
  for (const char* name :
       {"raise", "abort", "__GI_raise", "__GI_abort", "__pthread_kill_internal", "__assert_fail",
        "__stack_chk_fail", "__fortify_fail", "std::terminate()",
        "__cxxabiv1::__terminate(void (*)())", "__gnu_cxx::__verbose_terminate_handler()",
        "__asan_report_load8", "__sanitizer::Die()", "__restore_rt"}) {
    INFO(name);
    CHECK(common::is_crash_machinery(name));
  }
  for (const char* name : {"main", "raise_salary", "abort_transaction", "std::vector<int>::at"}) {
    INFO(name);
    CHECK_FALSE(common::is_crash_machinery(name));
  }
  // Only machinery: the top frames are kept rather than nothing.
  const auto s =
      common::signature_v2(6, std::vector<Frame>{named("raise"), named("abort")}, "", "");
  CHECK(s->chain == std::vector<std::string>{"raise", "abort"});
}

namespace {

Frame jit(const std::string& name = "") {
  Frame f;
  f.pc = 0x7f0000001000;
  f.jit = true;
  if (!name.empty()) {
    f.symbol = ResolvedSymbol{name, 0x10, false};
  }
  return f;
}

} // namespace

TEST_CASE("JIT frames count by their perf map names, unnamed ones not at all", "[signature]") {
  const std::vector<Frame> parse = {
      named("v8::base::OS::Abort", "/usr/bin/node"), named("Builtins_CEntry", "/usr/bin/node"),
      jit(), jit("JS:~parse /srv/a/app.js:2:15"), jit("JS:~main /srv/a/app.js:4:1")};
  const auto s = common::signature_v2(6, parse, "/usr/bin/node", "b:00");
  REQUIRE(s);
  CHECK(s->chain ==
        std::vector<std::string>{"Builtins_CEntry", "jit:parse app.js", "jit:main app.js"});
  // Another directory, another tier, another line: the same function of the same script.
  std::vector<Frame> moved = parse;
  moved[3].symbol->name = "JS:*parse /opt/b/app.js:3:1";
  CHECK(common::signature_v2(6, moved, "/usr/bin/node", "b:00")->signature == s->signature);
  // Unnamed JIT code at the top is skipped like crash machinery.
  const std::vector<Frame> top = {jit(), named("a", "/usr/bin/x"), named("b", "/usr/bin/x"),
                                  named("c", "/usr/bin/x")};
  CHECK(common::signature_v2(11, top, "/usr/bin/x", "b:00")->chain ==
        std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("the innermost named JIT frame joins a chain of the runtime's own frames",
          "[signature]") {
  std::vector<Frame> frames = {
      named("v8::internal::ErrorUtils::ThrowLoadFromNullOrUndefined", "/usr/bin/node"),
      named("v8::internal::LoadIC::Load", "/usr/bin/node"),
      named("v8::internal::Runtime_LoadIC_Miss", "/usr/bin/node"),
      named("Builtins_CEntry", "/usr/bin/node"),
      jit("JS:~render /srv/app.js:3:16"),
      jit("JS:~main /srv/app.js:4:1")};
  const auto s = common::signature_v2(6, frames, "/usr/bin/node", "b:00");
  REQUIRE(s);
  CHECK(s->chain.size() == 4);
  CHECK(s->chain.back() == "jit:render app.js");
  CHECK(s->input.ends_with("|jit:render app.js"));
  frames[4].symbol->name = "JS:~parse /srv/app.js:2:1";
  CHECK(common::signature_v2(6, frames, "/usr/bin/node", "b:00")->signature != s->signature);
  // Without a perf map nothing joins: the signature is the one it always was.
  for (auto& f : frames) {
    if (f.jit) {
      f.symbol.reset();
    }
  }
  CHECK(common::signature_v2(6, frames, "/usr/bin/node", "b:00")->chain.size() == 3);
}
