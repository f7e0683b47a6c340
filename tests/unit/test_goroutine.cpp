// The Go goroutine reader over synthetic memory (a map of words), with Go 1.19's offsets, and
// the original fault and signature it leads to.
#include "common/crash/analysis.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/goroutine.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <map>

namespace {

using common::GoLayout;
using common::GoRegisters;
using common::read_goroutine;
using common::SignalFrame;

// runtime.g and runtime.m of Go 1.19 (linux/amd64), as its DWARF gives them.
GoLayout go119() {
  GoLayout l;
  l.g_size = 392;
  l.g_stack_lo = 0;
  l.g_stack_hi = 8;
  l.g_panic = 32;
  l.g_m = 48;
  l.g_sched_sp = 56;
  l.g_sched_pc = 64;
  l.g_sched_bp = 104;
  l.g_goid = 152;
  l.g_sig = 240;
  l.g_sigcode0 = 272;
  l.g_sigcode1 = 280;
  l.g_sigpc = 288;
  l.m_size = 1008;
  l.m_g0 = 0;
  l.m_gsignal = 80;
  l.m_curg = 192;
  return l;
}

constexpr uint64_t k_m = 0x52aaa0;
constexpr uint64_t k_fs_base = k_m + 136 + 8; // &m.tls[0] + 8
constexpr uint64_t k_g = 0xc0000061a0;
constexpr uint64_t k_gsignal = 0xc000006000;
constexpr uint64_t k_g0 = 0x52a740;
constexpr uint64_t k_lo = 0xc00006a000;
constexpr uint64_t k_hi = 0xc00006b000;

struct Memory {
  std::map<uint64_t, uint64_t> words;
  void set(uint64_t addr, uint64_t v) { words[addr] = v; }
  common::WordReader reader() const {
    return [this](uint64_t a) -> std::optional<uint64_t> {
      const auto it = words.find(a);
      return it != words.end() ? std::optional(it->second) : std::nullopt;
    };
  }
};

// A goroutine that faulted and panicked, on a thread whose TLS slot names it (GOTRACEBACK=crash
// raises from the goroutine, and Go's handler forwards the signal before switching to gsignal).
Memory faulted(uint64_t tls_g) {
  Memory mem;
  const GoLayout l = go119();
  mem.set(k_fs_base - 8, tls_g);
  mem.set(k_m + l.m_g0, k_g0);
  mem.set(k_m + l.m_gsignal, k_gsignal);
  mem.set(k_m + l.m_curg, k_g);
  for (const uint64_t g : {k_g, k_gsignal, k_g0}) {
    mem.set(g + l.g_m, k_m);
  }
  mem.set(k_g + l.g_stack_lo, k_lo);
  mem.set(k_g + l.g_stack_hi, k_hi);
  mem.set(k_g + l.g_goid, 1);
  mem.set(k_g + l.g_sig, 0xdead00000000 | SIGSEGV); // sig is a uint32: the rest is not its
  mem.set(k_g + l.g_sigcode0, 1);
  mem.set(k_g + l.g_sigcode1, 0);
  mem.set(k_g + l.g_sigpc, 0x4813f4);
  mem.set(k_g + l.g_panic, k_lo + 0xd38);
  mem.set(k_g + l.g_sched_sp, 0);
  mem.set(k_g + l.g_sched_pc, 0x45b140);
  mem.set(k_g + l.g_sched_bp, k_lo + 0xcb0);
  return mem;
}

// The thread in the runtime's signal handler, on gsignal's stack; the kernel's frame of the
// signal it forwards holds the goroutine's registers.
const GoRegisters k_thread{0x45eb41, 0xc00000f260, 0xc00000f278};
const SignalFrame k_frame{0xc00000f300, 0x45eb41,    k_lo + 0xc48, 0, 0, 0,
                          std::nullopt, k_lo + 0xc60};

} // namespace

TEST_CASE("the goroutine in the TLS slot, walked from the signal frame on its stack",
          "[goroutine]") {
  const Memory mem = faulted(k_g);
  const auto g = read_goroutine(go119(), mem.reader(), k_fs_base, k_thread, {&k_frame, 1});
  REQUIRE(g);
  CHECK(g->error.empty());
  CHECK(g->g == k_g);
  CHECK_FALSE(g->from_curg);
  CHECK(g->goid == 1);
  CHECK(g->sig == SIGSEGV);
  CHECK(g->sigcode0 == 1);
  CHECK(g->sigpc == 0x4813f4);
  CHECK(g->panicking);
  REQUIRE(g->start);
  CHECK(g->start->pc == k_frame.pc);
  CHECK(g->start->sp == k_frame.sp);
  CHECK(g->start->bp == k_frame.bp);
}

TEST_CASE("a thread on gsignal or g0 stands for m.curg", "[goroutine]") {
  for (const uint64_t tls : {k_gsignal, k_g0}) {
    const Memory mem = faulted(tls);
    const auto g = read_goroutine(go119(), mem.reader(), k_fs_base, k_thread, {&k_frame, 1});
    REQUIRE(g);
    CHECK(g->g == k_g);
    CHECK(g->from_curg);
    CHECK(g->sig == SIGSEGV);
  }
}

TEST_CASE("the thread's own registers when it runs on the goroutine's stack", "[goroutine]") {
  const Memory mem = faulted(k_g);
  const GoRegisters on{0x4813f4, k_lo + 0xdd0, k_lo + 0xdf8};
  const auto g = read_goroutine(go119(), mem.reader(), k_fs_base, on, {});
  REQUIRE(g);
  REQUIRE(g->start);
  CHECK(g->start->sp == on.sp);
}

TEST_CASE("the saved g.sched of a goroutine that is not running", "[goroutine]") {
  Memory mem = faulted(k_g0);
  const GoLayout l = go119();
  mem.set(k_g + l.g_sched_sp, k_lo + 0x800);
  const auto g = read_goroutine(l, mem.reader(), k_fs_base, k_thread, {});
  REQUIRE(g);
  REQUIRE(g->start);
  CHECK(g->start->sp == k_lo + 0x800);
  CHECK(g->start->pc == 0x45b140);
}

TEST_CASE("hostile goroutine memory is an error, never a guess", "[goroutine]") {
  const GoLayout l = go119();
  SECTION("no TLS slot in the core's memory") {
    const Memory mem;
    CHECK_FALSE(read_goroutine(l, mem.reader(), k_fs_base, k_thread, {}));
    CHECK_FALSE(read_goroutine(l, mem.reader(), 4, k_thread, {}));
  }
  SECTION("a nil or misaligned g") {
    for (const uint64_t bad : {uint64_t{0}, k_g + 3}) {
      Memory mem = faulted(k_g);
      mem.set(k_fs_base - 8, bad);
      const auto g = read_goroutine(l, mem.reader(), k_fs_base, k_thread, {});
      REQUIRE(g);
      CHECK_FALSE(g->start);
      CHECK(g->error == "no goroutine in the thread's TLS slot");
    }
  }
  SECTION("gsignal whose m has no curg") {
    Memory mem = faulted(k_gsignal);
    mem.set(k_m + l.m_curg, 0);
    const auto g = read_goroutine(l, mem.reader(), k_fs_base, k_thread, {&k_frame, 1});
    REQUIRE(g);
    CHECK_FALSE(g->start);
    CHECK(g->error == "the thread runs no goroutine (m.curg is nil)");
  }
  SECTION("m.curg pointing back at gsignal: one hop, no loop") {
    Memory mem = faulted(k_gsignal);
    mem.set(k_m + l.m_curg, k_gsignal);
    const auto g = read_goroutine(l, mem.reader(), k_fs_base, k_thread, {&k_frame, 1});
    REQUIRE(g);
    CHECK(g->g == k_gsignal);
    CHECK(g->error == "the goroutine is not in the memory the core kept");
  }
  SECTION("fields near the top of the address space") {
    Memory mem = faulted(k_g);
    mem.set(k_fs_base - 8, UINT64_MAX - 7);
    const auto g = read_goroutine(l, mem.reader(), k_fs_base, k_thread, {});
    REQUIRE(g);
    CHECK_FALSE(g->start);
  }
  SECTION("stack bounds out of order") {
    Memory mem = faulted(k_g);
    mem.set(k_g + l.g_stack_lo, k_hi);
    mem.set(k_g + l.g_stack_hi, k_lo);
    const auto g = read_goroutine(l, mem.reader(), k_fs_base, k_thread, {&k_frame, 1});
    REQUIRE(g);
    CHECK_FALSE(g->start);
    CHECK(g->error == "the goroutine's stack bounds are not ordered");
  }
  SECTION("no registers on the goroutine's stack") {
    const Memory mem = faulted(k_g);
    SignalFrame elsewhere = k_frame;
    elsewhere.sp = k_hi; // one past its top
    const auto g = read_goroutine(l, mem.reader(), k_fs_base, k_thread, {&elsewhere, 1});
    REQUIRE(g);
    CHECK_FALSE(g->start);
    CHECK(g->error == "no saved registers on the goroutine's stack");
  }
}

TEST_CASE("a goroutine's fault is the original fault and starts the signature", "[goroutine]") {
  common::CoreFacts facts;
  facts.is_elf = true;
  facts.si_signo = SIGABRT;
  facts.si_code = SI_TKILL;
  std::vector<common::ThreadTrace> stacks(1);
  const auto frame = [](uint64_t pc, const char* name) {
    common::Frame f;
    f.pc = pc;
    f.symbol = common::ResolvedSymbol{name, 0x10, true};
    return f;
  };
  stacks[0].frames = {frame(0x45eb41, "runtime.raise.abi0"), frame(0x445cd6, "runtime.sigpanic"),
                      frame(0x4813f4, "main.(*Cache).lookup"), frame(0x48145e, "main.handle")};
  common::GoroutineTrace g;
  g.layout = "dwarf";
  g.sig = SIGSEGV;
  g.sigcode0 = 1;
  g.sigcode1 = 0x10;
  g.sigpc = 0x4813f4;
  g.first_frame = 0;
  g.fault_frame = 2;
  stacks[0].goroutine = g;
  const auto o = common::original_fault(facts, stacks);
  REQUIRE(o);
  CHECK(o->signo == SIGSEGV);
  CHECK(o->code_name == "SEGV_MAPERR");
  CHECK(o->address == 0x10);
  CHECK(o->pc == 0x4813f4);
  CHECK(o->frame == 2);
  REQUIRE(o->symbol);
  CHECK(o->symbol->name == "main.(*Cache).lookup");
  SECTION("a fault frame past the frames (a cut trace) is no fault") {
    stacks[0].goroutine->fault_frame = 9;
    CHECK_FALSE(common::original_fault(facts, stacks));
  }
  SECTION("no signal: no fault") {
    stacks[0].goroutine->sig = 0;
    CHECK_FALSE(common::original_fault(facts, stacks));
  }
}

TEST_CASE("a Go runtime's fault is named as the runtime's in the cause", "[goroutine]") {
  const nlohmann::json fault = {{"signal_name", "SEGV"},
                                {"si_code_name", "SEGV_MAPERR"},
                                {"fault_address", "0x0"},
                                {"symbol", {{"name", "main.(*Cache).lookup"}}}};
  CHECK(common::crash_cause_detail({{"original_fault", fault}, {"goroutine", {{"goid", 1}}}}) ==
        " raised by the Go runtime after SIGSEGV (SEGV_MAPERR) at 0x0 in main.(*Cache).lookup");
  CHECK(common::crash_cause_detail({{"original_fault", fault}})
            .starts_with(" raised by the program's crash handler after SIGSEGV"));
}
