// Signal frames on a stack, the original fault and the text that names it (no kernel needed:
// the frames are built here with the kernel's layout).
#include "common/crash/analysis.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/sigframe.hpp"

#include <catch2/catch.hpp>

#include <elf.h>

#include <csignal>
#include <cstring>
#include <vector>

namespace {

constexpr uint64_t k_base = 0x7ffd00000000;
constexpr uint64_t k_restore_rt = 0x7f0000001050;
constexpr uint64_t k_text_lo = 0x7f0000000000;
constexpr uint64_t k_text_hi = 0x7f0000100000;

bool executable(uint64_t a) {
  return a >= k_text_lo && a < k_text_hi;
}

template <typename T>
void put(std::vector<std::byte>& w, size_t off, T v) {
  std::memcpy(w.data() + off, &v, sizeof v);
}

// An x86-64 rt_sigframe at `off` in `w` as the kernel writes it: interrupted at pc/sp by a page
// fault at cr2 (the sigcontext), with or without a siginfo (SA_SIGINFO).
void frame(std::vector<std::byte>& w, size_t off, uint64_t pc, uint64_t sp, uint64_t cr2,
           bool siginfo) {
  put<uint64_t>(w, off, k_restore_rt);
  put<uint64_t>(w, off + 8, 7);                  // uc_flags
  put<uint32_t>(w, off + 32, 1);                 // ss_flags SS_ONSTACK
  put<uint64_t>(w, off + 48 + 15 * 8, sp);       // rsp
  put<uint64_t>(w, off + 48 + 16 * 8, pc);       // rip
  put<uint64_t>(w, off + 48 + 17 * 8, 0x10246);  // eflags
  put<uint16_t>(w, off + 48 + 18 * 8, 0x33);     // cs
  put<uint16_t>(w, off + 48 + 18 * 8 + 6, 0x2b); // ss
  put<uint64_t>(w, off + 48 + 19 * 8, 6);        // err: user write to a page not present
  put<uint64_t>(w, off + 48 + 20 * 8, 14);       // trapno #PF
  put<uint64_t>(w, off + 48 + 22 * 8, cr2);
  put<uint64_t>(w, off + 48 + 23 * 8, ((k_base + off + 440) + 63) & ~uint64_t{63}); // fpstate
  if (siginfo) {
    put<int32_t>(w, off + 312, SIGBUS);
    put<int32_t>(w, off + 312 + 8, BUS_ADRERR);
    put<uint64_t>(w, off + 312 + 16, cr2);
  }
}

} // namespace

TEST_CASE("an rt_sigframe is found and its fault read from the sigcontext", "[sigframe]") {
  std::vector<std::byte> w(4096);
  frame(w, 0x108, 0x7f0000002000, 0x7ffe00001000, 0x10, false);
  const auto frames = common::find_signal_frames(w, k_base, EM_X86_64, executable);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].address == k_base + 0x108);
  CHECK(frames[0].pc == 0x7f0000002000);
  CHECK(frames[0].sp == 0x7ffe00001000);
  CHECK_FALSE(frames[0].info); // no SA_SIGINFO: zeros where the siginfo would be
  const auto fault = common::signal_frame_fault(frames[0]);
  REQUIRE(fault);
  CHECK(fault->signo == SIGSEGV);
  CHECK(fault->code == SEGV_MAPERR);
  CHECK(fault->fault_address == 0x10);
  // Other machines have no frames here.
  CHECK(common::find_signal_frames(w, k_base, EM_AARCH64, executable).empty());
}

TEST_CASE("an SA_SIGINFO frame's siginfo wins over the trap number", "[sigframe]") {
  std::vector<std::byte> w(4096);
  frame(w, 0x208, 0x7f0000002000, 0x7ffe00001000, 0x1234, true);
  const auto frames = common::find_signal_frames(w, k_base, EM_X86_64, executable);
  REQUIRE(frames.size() == 1);
  const auto fault = common::signal_frame_fault(frames[0]);
  REQUIRE(fault);
  CHECK(fault->signo == SIGBUS);
  CHECK(fault->code == BUS_ADRERR);
}

TEST_CASE("a frame of a signal that is no fault holds no fault", "[sigframe]") {
  // SIGABRT raised by the Go runtime's handler after a page fault it turned into a panic: the
  // sigcontext still says #PF (the thread's last trap), but at this frame's pc nothing faulted.
  std::vector<std::byte> w(4096);
  frame(w, 0x208, 0x7f0000002000, 0x7ffe00001000, 0x0, true);
  put<int32_t>(w, 0x208 + 312, SIGABRT);
  put<int32_t>(w, 0x208 + 312 + 8, SI_TKILL);
  const auto frames = common::find_signal_frames(w, k_base, EM_X86_64, executable);
  REQUIRE(frames.size() == 1);
  REQUIRE(frames[0].info);
  CHECK(frames[0].info->signo == SIGABRT);
  CHECK_FALSE(common::signal_frame_fault(frames[0]));
}

TEST_CASE("what the kernel never writes is no signal frame", "[sigframe]") {
  std::vector<std::byte> w(4096);
  frame(w, 0x108, 0x7f0000002000, 0x7ffe00001000, 0x10, false);
  auto bad = w;
  put<uint64_t>(bad, 0x108, 0x1234); // return address outside executable memory
  CHECK(common::find_signal_frames(bad, k_base, EM_X86_64, executable).empty());
  bad = w;
  put<uint64_t>(bad, 0x108 + 16, 1); // uc_link
  CHECK(common::find_signal_frames(bad, k_base, EM_X86_64, executable).empty());
  bad = w;
  put<uint64_t>(bad, 0x108 + 48 + 17 * 8, 0); // EFLAGS without its fixed bit
  CHECK(common::find_signal_frames(bad, k_base, EM_X86_64, executable).empty());
  bad = w;
  put<uint64_t>(bad, 0x108 + 48 + 23 * 8, k_base); // FPU state below the frame
  CHECK(common::find_signal_frames(bad, k_base, EM_X86_64, executable).empty());
  // A frame cut by the window's end is not read past it.
  CHECK(common::find_signal_frames(std::span(w).first(0x108 + 439), k_base, EM_X86_64, executable)
            .empty());
}

TEST_CASE("at most k_max_signal_frames frames per window", "[sigframe]") {
  std::vector<std::byte> w(64 * 1024);
  for (size_t i = 0; i < 20; ++i) {
    frame(w, 8 + i * 1024, 0x7f0000002000, 0x7ffe00001000, 0x10, false);
  }
  CHECK(common::find_signal_frames(w, k_base, EM_X86_64, executable).size() ==
        common::k_max_signal_frames);
}

TEST_CASE("the original fault needs a signal the process sent itself", "[sigframe]") {
  std::vector<std::byte> w(4096);
  frame(w, 0x108, 0x7f0000002000, 0x7ffe00001000, 0x10, false);
  common::CoreFacts f;
  f.pid = 100;
  f.sender_pid = 100;
  f.si_signo = SIGABRT;
  f.si_code = SI_TKILL;
  common::ThreadState t;
  t.signal_frames = common::find_signal_frames(w, k_base, EM_X86_64, executable);
  f.thread_states.push_back(t);
  // The unwinder went through the trampoline into the interrupted frame.
  common::ThreadTrace trace;
  common::Frame handler, tramp, site, caller;
  handler.pc = 0x7f0000003000;
  tramp.pc = k_restore_rt;
  tramp.signal_frame = true;
  site.pc = 0x7f0000002000;
  site.symbol = common::ResolvedSymbol{"crash_here", 0, true};
  caller.pc = 0x7f0000004000;
  trace.frames = {handler, tramp, site, caller};
  const std::vector<common::ThreadTrace> stacks = {trace};
  const auto o = common::original_fault(f, stacks);
  REQUIRE(o);
  CHECK(o->signo == SIGSEGV);
  CHECK(o->code_name == "SEGV_MAPERR");
  CHECK(o->address == 0x10);
  CHECK(o->frame == 2);
  REQUIRE(o->symbol);
  CHECK(o->symbol->name == "crash_here");
  f.sender_pid = 101; // another process killed it: the fault is not why it died
  CHECK_FALSE(common::original_fault(f, stacks));
  f.sender_pid = 100;
  f.si_code = SEGV_MAPERR; // a fault of its own, in the handler
  CHECK_FALSE(common::original_fault(f, stacks));
}

TEST_CASE("the cause text from a stored crash object, whatever its types", "[sigframe]") {
  using nlohmann::json;
  const json crash = {{"original_fault",
                       {{"signal_name", "SEGV"},
                        {"si_code_name", "SEGV_MAPERR"},
                        {"fault_address", "0x10"},
                        {"pc", "0x55550000"},
                        {"symbol", {{"name", "crash_here"}}}}}};
  CHECK(common::crash_cause_detail(crash) ==
        " raised by the program's crash handler after SIGSEGV (SEGV_MAPERR) at 0x10 in "
        "crash_here");
  CHECK(common::crash_cause_detail(
            {{"blocked_syscall", {{"number", 92}, {"name", "chown"}, {"arch", "x86_64"}}}}) ==
        " (seccomp blocked chown (92) on x86_64)");
  CHECK(common::crash_cause_detail({{"blocked_syscall", {{"number", 9999}, {"name", nullptr}}}}) ==
        " (seccomp blocked system call 9999)");
  // Hostile shapes: no text, no exception.
  CHECK(common::crash_cause_detail(json::array()).empty());
  CHECK(common::crash_cause_detail({{"blocked_syscall", {{"number", "92"}}}}).empty());
  CHECK(common::crash_cause_detail({{"original_fault", {{"symbol", 3}, {"pc", 4}}}}) ==
        " raised by the program's crash handler after a fault");
  CHECK(common::crash_cause_detail({{"original_fault", nullptr}}).empty());
}

TEST_CASE("x86-64 system call names", "[sigframe]") {
  CHECK(common::x86_64_syscall_name(0) == "read");
  CHECK(common::x86_64_syscall_name(92) == "chown");
  CHECK(common::x86_64_syscall_name(450) == "set_mempolicy_home_node");
  CHECK(common::x86_64_syscall_name(400).empty()); // a hole in the table
  CHECK(common::x86_64_syscall_name(451).empty());
  CHECK(common::x86_64_syscall_name(-1).empty());
  CHECK(common::x86_64_syscall_name(0x40000000 + 92).empty()); // x32
  CHECK(common::audit_arch_name(0xc000003e) == "x86_64");
  CHECK(common::audit_arch_name(1).empty());
}
