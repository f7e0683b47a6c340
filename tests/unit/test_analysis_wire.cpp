#include "common/crash/analysis_wire.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace common;
using common::analysis_from_wire;
using common::analysis_to_wire;

namespace {

Frame frame(uint64_t pc, FrameTrust trust, const std::string& name) {
  Frame f;
  f.pc = pc;
  f.trust = trust;
  f.module = "/usr/lib/x86_64-linux-gnu/libc.so.6";
  f.module_offset = pc - 0x7f0000000000;
  f.build_id = "0123456789abcdef";
  f.symbol = ResolvedSymbol{name, 0x1c, true};
  return f;
}

CrashAnalysis sample(size_t threads, size_t frames) {
  CrashAnalysis a;
  for (size_t t = 0; t < threads; ++t) {
    ThreadTrace trace;
    trace.tid = static_cast<int64_t>(100 + t);
    trace.crashing = t == 0;
    trace.name = "worker-" + std::to_string(t);
    trace.state = "S";
    for (size_t i = 0; i < frames; ++i) {
      trace.frames.push_back(frame(0x7f0000001000 + i * 16,
                                   i == 0 ? FrameTrust::context : FrameTrust::cfi,
                                   "function_" + std::to_string(i)));
    }
    a.stacks.push_back(std::move(trace));
  }
  if (!a.stacks.empty() && !a.stacks[0].frames.empty()) {
    a.symbol = a.stacks[0].frames[0].symbol;
  }
  a.signature = SignatureV2{"0011223344556677", "v2|11|a|b|c", {"a", "b", "c"}};
  return a;
}

} // namespace

TEST_CASE("the analysis crosses the pipe unchanged", "[analysis_wire]") {
  CrashAnalysis a = sample(3, 5);
  Frame& f = a.stacks[1].frames[2];
  f.source = SourceLine{"src/main.c", 42};
  f.inlined = true;
  f.exact_pc = true;
  f.signal_frame = true;
  f.jit = true;
  f.trust = FrameTrust::scan;
  a.stacks[2].frames[1].module_offset.reset();
  a.stacks[2].frames[1].symbol.reset();
  a.stacks[2].error = "stack window ended";
  const std::string text = analysis_to_wire(a, 1 << 20);
  auto back = analysis_from_wire(text, 1 << 20);
  REQUIRE(back);
  CHECK(back->cut.empty());
  const CrashAnalysis& b = back->analysis;
  REQUIRE(b.stacks.size() == 3);
  REQUIRE(b.symbol);
  CHECK(b.symbol->name == "function_0");
  CHECK(b.symbol->offset == 0x1c);
  CHECK(b.symbol->verified);
  REQUIRE(b.signature);
  CHECK(b.signature->signature == "0011223344556677");
  CHECK(b.signature->input == "v2|11|a|b|c");
  CHECK(b.signature->chain == std::vector<std::string>{"a", "b", "c"});
  for (size_t t = 0; t < 3; ++t) {
    CHECK(b.stacks[t].tid == a.stacks[t].tid);
    CHECK(b.stacks[t].crashing == a.stacks[t].crashing);
    CHECK(b.stacks[t].name == a.stacks[t].name);
    CHECK(b.stacks[t].state == "S");
    CHECK(b.stacks[t].error == a.stacks[t].error);
    REQUIRE(b.stacks[t].frames.size() == 5);
    for (size_t i = 0; i < 5; ++i) {
      const Frame& x = a.stacks[t].frames[i];
      const Frame& y = b.stacks[t].frames[i];
      CHECK(y.pc == x.pc);
      CHECK(y.trust == x.trust);
      CHECK(y.module == x.module);
      CHECK(y.module_offset == x.module_offset);
      CHECK(y.build_id == x.build_id);
      CHECK(y.symbol.has_value() == x.symbol.has_value());
      CHECK(y.source.has_value() == x.source.has_value());
      CHECK(y.inlined == x.inlined);
      CHECK(y.exact_pc == x.exact_pc);
      CHECK(y.signal_frame == x.signal_frame);
      CHECK(y.jit == x.jit);
    }
  }
  CHECK(b.stacks[1].frames[2].source->file == "src/main.c");
  CHECK(b.stacks[1].frames[2].source->line == 42);
}

TEST_CASE("an empty analysis crosses the pipe as empty", "[analysis_wire]") {
  auto back = analysis_from_wire(analysis_to_wire(CrashAnalysis{}, 4096), 4096);
  REQUIRE(back);
  CHECK(back->analysis.stacks.empty());
  CHECK_FALSE(back->analysis.symbol);
  CHECK_FALSE(back->analysis.signature);
}

TEST_CASE("a large analysis is cut to its bound, crashing thread first", "[analysis_wire]") {
  const CrashAnalysis a = sample(64, 64);
  constexpr size_t k_max = 256 << 10;
  const std::string full = analysis_to_wire(a, 64 << 20);
  REQUIRE(full.size() > k_max); // else this test tests nothing
  const std::string text = analysis_to_wire(a, k_max);
  CHECK(text.size() <= k_max);
  auto back = analysis_from_wire(text, k_max);
  REQUIRE(back);
  const auto& stacks = back->analysis.stacks;
  REQUIRE_FALSE(stacks.empty());
  CHECK(stacks.size() < 64);
  CHECK(stacks[0].crashing);
  CHECK(stacks[0].frames.size() == 64);
  CHECK(back->cut == "threads: " + std::to_string(stacks.size()) + " of 64 kept");

  // One thread whose frames alone are too large keeps its innermost frames.
  CrashAnalysis huge = sample(1, 64);
  for (auto& f : huge.stacks[0].frames) {
    f.symbol->name = std::string(8000, 'x');
  }
  const std::string cut = analysis_to_wire(huge, k_max);
  CHECK(cut.size() <= k_max);
  auto one = analysis_from_wire(cut, k_max);
  REQUIRE(one);
  REQUIRE(one->analysis.stacks.size() == 1);
  const size_t kept = one->analysis.stacks[0].frames.size();
  CHECK(kept > 0);
  CHECK(kept < 64);
  CHECK(one->cut == "crashing thread: " + std::to_string(kept) + " of 64 frames kept");
}

TEST_CASE("a malformed analysis result is refused, not guessed at", "[analysis_wire]") {
  const std::string good = analysis_to_wire(sample(1, 2), 1 << 20);
  REQUIRE(analysis_from_wire(good, 1 << 20));
  const char* bad[] = {
      "",
      "null",
      "[]",
      "{\"symbol\":null,\"signature\":null,\"cut\":\"\",\"stacks\":{}}",
      "{\"symbol\":null,\"signature\":null,\"cut\":\"\"}",
      "{\"symbol\":7,\"signature\":null,\"cut\":\"\",\"stacks\":[]}",
      "{\"symbol\":null,\"signature\":null,\"cut\":\"\",\"stacks\":[{\"tid\":\"1\"}]}",
  };
  for (const char* text : bad) {
    INFO(text);
    CHECK_FALSE(analysis_from_wire(text, 1 << 20));
  }
  // A trust name the unwinder never writes.
  std::string odd = good;
  const size_t at = odd.find("\"cfi\"");
  REQUIRE(at != std::string::npos);
  odd.replace(at, 5, "\"magic\"");
  CHECK_FALSE(analysis_from_wire(odd, 1 << 20));
  // Cut short, over the size bound, nested without end.
  CHECK_FALSE(analysis_from_wire(good.substr(0, good.size() / 2), 1 << 20));
  CHECK_FALSE(analysis_from_wire(good, good.size() - 1));
  CHECK_FALSE(analysis_from_wire(std::string(100000, '['), 1 << 20));
}
