// The kernel's signal frames on a thread's stack, and the names of what a signal reports.
//
// When the kernel delivers a signal to a handler it pushes an rt signal frame: on x86-64
// `struct rt_sigframe` = the return address (`__restore_rt`), the `ucontext` (uc_flags, uc_link,
// uc_stack, uc_mcontext — the interrupted registers —, uc_sigmask) and the `siginfo`. A thread
// that crashes inside a handler (one that re-raises, as faulthandler and the crash reporters do)
// has that frame on its stack: it holds where the signal interrupted the thread (the stack
// pointer of the stack it came from, when the handler runs on a sigaltstack) and the earlier
// fault. The stack is the crasher's and hostile: a frame is only believed when its fixed fields
// have the values the kernel writes, and a found frame costs nothing but its decoding.
#pragma once

#include "common/crash/elf_notes.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace common {

struct SignalFrame {
  uint64_t address = 0; // of the frame (its return-address word)
  uint64_t pc = 0;      // the interrupted thread's pc
  uint64_t sp = 0;      // and its stack pointer
  // The thread's last fault as the kernel saves it in the sigcontext (x86 trap number, error
  // code, cr2): what a handler without SA_SIGINFO leaves of the signal's cause.
  uint64_t trapno = 0;
  uint64_t err = 0;
  uint64_t cr2 = 0;
  // The siginfo the kernel copies into the frame for SA_SIGINFO handlers only; nullopt when the
  // bytes there are no siginfo (another handler's frame holds whatever the stack held).
  std::optional<SigInfo> info;
  uint64_t bp = 0; // the interrupted frame pointer (x86-64 rbp)
};

// The fault that delivered a frame's signal, when it was one the kernel raised (si_code > 0) of
// SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP or SIGSYS: the frame's siginfo when it holds one
// (a siginfo of a signal a process sent: no fault), else what the trap number says (page fault: SIGSEGV, SEGV_ACCERR or SEGV_MAPERR by the error
// code, at cr2; general protection: SIGSEGV SI_KERNEL; divide error: SIGFPE FPE_INTDIV;
// invalid opcode: SIGILL ILL_ILLOPN; breakpoint: SIGTRAP TRAP_BRKPT; alignment: SIGBUS
// BUS_ADRALN).
std::optional<SigInfo> signal_frame_fault(const SignalFrame& frame);

// Bytes from a frame's address to the end of what find_signal_frames() reads.
constexpr size_t k_rt_sigframe_size = 440;
// Frames one window yields at most.
constexpr size_t k_max_signal_frames = 4;

// The x86-64 rt signal frames in `window` (stack bytes at address `base`), lowest address
// (innermost) first, at most k_max_signal_frames. `executable(addr)` says whether addr is in
// executable memory of the process (the return address must be). Other machines: none.
std::vector<SignalFrame> find_signal_frames(std::span<const std::byte> window, uint64_t base,
                                            uint16_t machine,
                                            const std::function<bool(uint64_t)>& executable);

// The name of an x86-64 system call number ("chown"); empty when unknown.
std::string_view x86_64_syscall_name(int64_t nr);
// The name of an AUDIT_ARCH_* value ("x86_64", "i386", "aarch64"); empty when unknown.
std::string_view audit_arch_name(uint32_t arch);

} // namespace common
