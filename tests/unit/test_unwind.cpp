#include "common/crash/unwind.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>

using common::CoreFacts;
using common::FrameTrust;
using common::ThreadState;

namespace {

// An x86_64 thread with rip, rsp and rbp set and a stack window at rsp.
ThreadState thread(int64_t tid, uint64_t rip, uint64_t rsp, uint64_t rbp,
                   std::vector<uint64_t> stack_words) {
  ThreadState t;
  t.tid = tid;
  t.gregs.assign(27, 0);
  t.gregs[16] = rip;
  t.gregs[19] = rsp;
  t.gregs[4] = rbp;
  t.pc = rip;
  t.sp = rsp;
  t.stack_base = rsp;
  t.stack.resize(stack_words.size() * 8);
  std::memcpy(t.stack.data(), stack_words.data(), t.stack.size());
  return t;
}

CoreFacts facts_with(std::vector<ThreadState> threads) {
  CoreFacts f;
  f.is_elf = true;
  f.machine = "x86_64";
  f.thread_states = std::move(threads);
  return f;
}

} // namespace

TEST_CASE("without verified modules a thread keeps its context frame and says why", "[unwind]") {
  constexpr uint64_t k_sp = 0x7ffd00000000;
  // A frame-pointer chain pointing at itself and return addresses into nothing: no module to
  // validate a call site, so neither the chain nor the scan may invent frames.
  const CoreFacts f = facts_with({thread(7, 0x401136, k_sp, k_sp, {k_sp, 0x401200, k_sp, 0x401300}),
                                  thread(8, 0x401000, k_sp + 0x100000, 0, {})});
  const auto traces = common::unwind_threads(f, {});
  REQUIRE(traces.size() == 2);
  CHECK(traces[0].crashing);
  CHECK_FALSE(traces[1].crashing);
  CHECK(traces[0].tid == 7);
  REQUIRE(traces[0].frames.size() == 1);
  CHECK(traces[0].frames[0].pc == 0x401136);
  CHECK(traces[0].frames[0].trust == FrameTrust::context);
  CHECK_FALSE(traces[0].frames[0].symbol);
  // libdwfl's own frame-pointer step found 0x401200, which no call instruction precedes.
  CHECK(traces[0].error == "frame pointer leads to 0x401200, not after a call");
  CHECK(traces[1].error == "no module with a verified file at 0x401000");
}

TEST_CASE("threads are capped and a passed deadline leaves frame #0 only", "[unwind]") {
  std::vector<ThreadState> threads;
  for (int i = 0; i < 80; ++i) {
    threads.push_back(thread(100 + i, 0x1000 + static_cast<uint64_t>(i), 0x7ffd00000000, 0, {}));
  }
  const CoreFacts f = facts_with(std::move(threads));
  common::UnwindOptions options;
  options.max_threads = 64;
  options.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  const auto traces = common::unwind_threads(f, options);
  REQUIRE(traces.size() == 64);
  for (size_t i = 0; i < traces.size(); ++i) {
    REQUIRE(traces[i].frames.size() == 1);
    CHECK(traces[i].frames[0].pc == 0x1000 + i);
  }
}

TEST_CASE("registers that do not fit the machine give no frames beyond the pc", "[unwind]") {
  ThreadState t = thread(9, 0x1234, 0x7ffd00000000, 0, {0x1, 0x2});
  t.gregs.resize(5); // a short NT_PRSTATUS
  const auto traces = common::unwind_threads(facts_with({t}), {});
  REQUIRE(traces.size() == 1);
  REQUIRE(traces[0].frames.size() == 1);
  CHECK(traces[0].frames[0].pc == 0x1234);
}

TEST_CASE("frame trust names", "[unwind]") {
  for (auto t :
       {FrameTrust::context, FrameTrust::cfi, FrameTrust::frame_pointer, FrameTrust::scan}) {
    CHECK(common::frame_trust_from_string(common::to_string(t)) == t);
  }
  CHECK(common::to_string(FrameTrust::frame_pointer) == "frame_pointer");
  CHECK_FALSE(common::frame_trust_from_string("guess"));
}
