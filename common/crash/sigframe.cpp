#include "common/crash/sigframe.hpp"

#include "common/base/bytes.hpp"
#include "common/crash/elf_struct.hpp"

#include <array>
#include <csignal>

namespace common {

namespace {

// x86-64 struct rt_sigframe (arch/x86/include/asm/sigframe.h): pretcode, then the kernel's
// struct ucontext (uc_flags, uc_link, uc_stack{ss_sp, ss_flags, ss_size}, uc_mcontext = struct
// sigcontext (glibc's gregs order: r8…r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags,
// cs/gs/fs/ss, err, trapno, oldmask, cr2, fpstate, reserved[8]), uc_sigmask (8 bytes)), then
// struct siginfo (128 bytes).
constexpr size_t k_uc_flags = 8;
constexpr size_t k_uc_link = 16;
constexpr size_t k_ss_flags = 32;
constexpr size_t k_mcontext = 48;
constexpr size_t k_rbp = k_mcontext + 10 * 8;
constexpr size_t k_rsp = k_mcontext + 15 * 8;
constexpr size_t k_rip = k_mcontext + 16 * 8;
constexpr size_t k_cs = k_mcontext + 18 * 8;
constexpr size_t k_eflags = k_mcontext + 17 * 8;
constexpr size_t k_ss = k_cs + 6;
constexpr size_t k_err = k_mcontext + 19 * 8;
constexpr size_t k_trapno = k_mcontext + 20 * 8;
constexpr size_t k_cr2 = k_mcontext + 22 * 8;
constexpr size_t k_fpstate = k_mcontext + 23 * 8;
constexpr size_t k_siginfo = 312;
constexpr size_t k_siginfo_size = 128;
static_assert(k_siginfo + k_siginfo_size == k_rt_sigframe_size);
// UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS.
constexpr uint64_t k_uc_flags_known = 0x7;
constexpr uint32_t k_ss_autodisarm = 1u << 31;
constexpr uint16_t k_user_cs = 0x33;     // __USER_CS
constexpr uint16_t k_user_ds = 0x2b;     // __USER_DS, the saved ss (0 from kernels before 4.6)
constexpr uint64_t k_eflags_fixed = 0x2; // bit 1 of EFLAGS is always set

std::optional<SignalFrame> x86_64_frame(std::span<const std::byte> w, size_t off, uint64_t base,
                                        const std::function<bool(uint64_t)>& executable) {
  const auto cs = read_le<uint16_t>(w, off + k_cs);
  if (!cs || *cs != k_user_cs) {
    return std::nullopt; // the cheap test first: most words are not a frame
  }
  const auto ret = read_le<uint64_t>(w, off);
  const auto flags = read_le<uint64_t>(w, off + k_uc_flags);
  const auto link = read_le<uint64_t>(w, off + k_uc_link);
  const auto ss_flags = read_le<uint32_t>(w, off + k_ss_flags);
  const auto sp = read_le<uint64_t>(w, off + k_rsp);
  const auto pc = read_le<uint64_t>(w, off + k_rip);
  const auto fpstate = read_le<uint64_t>(w, off + k_fpstate);
  const auto ss_reg = read_le<uint16_t>(w, off + k_ss);
  const auto eflags = read_le<uint64_t>(w, off + k_eflags);
  const auto err = read_le<uint64_t>(w, off + k_err);
  const auto trapno = read_le<uint64_t>(w, off + k_trapno);
  const auto cr2 = read_le<uint64_t>(w, off + k_cr2);
  const auto bp = read_le<uint64_t>(w, off + k_rbp);
  if (!bp || !ret || !flags || !link || !ss_flags || !sp || !pc || !fpstate || !ss_reg || !eflags ||
      !err || !trapno || !cr2) {
    return std::nullopt;
  }
  const uint64_t here = base + off;
  // The kernel writes uc_link 0, ss_flags one of 0, SS_ONSTACK, SS_DISABLE (with
  // SS_AUTODISARM), and puts the FPU state above the frame, 64-byte aligned.
  const uint32_t ss = *ss_flags & ~k_ss_autodisarm;
  if ((*flags & ~k_uc_flags_known) != 0 || *link != 0 || ss > 2 || *sp == 0 ||
      (*ss_reg != k_user_ds && *ss_reg != 0) || (*eflags & k_eflags_fixed) == 0 ||
      (*fpstate != 0 && (*fpstate < here || *fpstate % 64 != 0)) || !executable(*ret)) {
    return std::nullopt;
  }
  SignalFrame f{here, *pc, *sp, *trapno, *err, *cr2, std::nullopt, *bp};
  if (auto info = decode_siginfo(w.subspan(off + k_siginfo, k_siginfo_size));
      info && info->signo >= 1 && info->signo <= 64) {
    f.info = info;
  }
  return f;
}

constexpr std::array<std::string_view, 451> k_x86_64_syscalls = {
    "read",
    "write",
    "open",
    "close",
    "stat",
    "fstat",
    "lstat",
    "poll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "access",
    "pipe",
    "select",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "shmget",
    "shmat",
    "shmctl",
    "dup",
    "dup2",
    "pause",
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "getpid",
    "sendfile",
    "socket",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "socketpair",
    "setsockopt",
    "getsockopt",
    "clone",
    "fork",
    "vfork",
    "execve",
    "exit",
    "wait4",
    "kill",
    "uname",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "truncate",
    "ftruncate",
    "getdents",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "mkdir",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "lchown",
    "umask",
    "gettimeofday",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "times",
    "ptrace",
    "getuid",
    "syslog",
    "getgid",
    "setuid",
    "setgid",
    "geteuid",
    "getegid",
    "setpgid",
    "getppid",
    "getpgrp",
    "setsid",
    "setreuid",
    "setregid",
    "getgroups",
    "setgroups",
    "setresuid",
    "getresuid",
    "setresgid",
    "getresgid",
    "getpgid",
    "setfsuid",
    "setfsgid",
    "getsid",
    "capget",
    "capset",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "mknod",
    "uselib",
    "personality",
    "ustat",
    "statfs",
    "fstatfs",
    "sysfs",
    "getpriority",
    "setpriority",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "vhangup",
    "modify_ldt",
    "pivot_root",
    "_sysctl",
    "prctl",
    "arch_prctl",
    "adjtimex",
    "setrlimit",
    "chroot",
    "sync",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "create_module",
    "init_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "quotactl",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "gettid",
    "readahead",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "tkill",
    "time",
    "futex",
    "sched_setaffinity",
    "sched_getaffinity",
    "set_thread_area",
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_submit",
    "io_cancel",
    "get_thread_area",
    "lookup_dcookie",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait_old",
    "remap_file_pages",
    "getdents64",
    "set_tid_address",
    "restart_syscall",
    "semtimedop",
    "fadvise64",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_settime",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "exit_group",
    "epoll_wait",
    "epoll_ctl",
    "tgkill",
    "utimes",
    "vserver",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "kexec_load",
    "waitid",
    "add_key",
    "request_key",
    "keyctl",
    "ioprio_set",
    "ioprio_get",
    "inotify_init",
    "inotify_add_watch",
    "inotify_rm_watch",
    "migrate_pages",
    "openat",
    "mkdirat",
    "mknodat",
    "fchownat",
    "futimesat",
    "newfstatat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "pselect6",
    "ppoll",
    "unshare",
    "set_robust_list",
    "get_robust_list",
    "splice",
    "tee",
    "sync_file_range",
    "vmsplice",
    "move_pages",
    "utimensat",
    "epoll_pwait",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "fallocate",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "signalfd4",
    "eventfd2",
    "epoll_create1",
    "dup3",
    "pipe2",
    "inotify_init1",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "perf_event_open",
    "recvmmsg",
    "fanotify_init",
    "fanotify_mark",
    "prlimit64",
    "name_to_handle_at",
    "open_by_handle_at",
    "clock_adjtime",
    "syncfs",
    "sendmmsg",
    "setns",
    "getcpu",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "finit_module",
    "sched_setattr",
    "sched_getattr",
    "renameat2",
    "seccomp",
    "getrandom",
    "memfd_create",
    "kexec_file_load",
    "bpf",
    "execveat",
    "userfaultfd",
    "membarrier",
    "mlock2",
    "copy_file_range",
    "preadv2",
    "pwritev2",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "statx",
    "io_pgetevents",
    "rseq",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "pidfd_send_signal",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pidfd_open",
    "clone3",
    "close_range",
    "openat2",
    "pidfd_getfd",
    "faccessat2",
    "process_madvise",
    "epoll_pwait2",
    "mount_setattr",
    "quotactl_fd",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "memfd_secret",
    "process_mrelease",
    "futex_waitv",
    "set_mempolicy_home_node",
};

} // namespace

std::vector<SignalFrame> find_signal_frames(std::span<const std::byte> window, uint64_t base,
                                            uint16_t machine,
                                            const std::function<bool(uint64_t)>& executable) {
  std::vector<SignalFrame> out;
  if (machine != EM_X86_64 || window.size() < k_rt_sigframe_size || base % 8 != 0) {
    return out;
  }
  // Frames are 8-aligned (the kernel aligns the frame to 16 then pushes nothing else): one
  // look per stack word, bounded by the window.
  for (size_t off = 0; off + k_rt_sigframe_size <= window.size(); off += 8) {
    if (base + off < base) {
      break; // wraps the address space
    }
    if (auto f = x86_64_frame(window, off, base, executable)) {
      out.push_back(*f);
      if (out.size() >= k_max_signal_frames) {
        break;
      }
      off += k_rt_sigframe_size - 8; // frames do not overlap
    }
  }
  return out;
}

std::optional<SigInfo> signal_frame_fault(const SignalFrame& frame) {
  const auto is_fault = [](const SigInfo& s) {
    const int n = s.signo;
    return s.code > 0 && (n == SIGSEGV || n == SIGBUS || n == SIGILL || n == SIGFPE ||
                          n == SIGTRAP || n == SIGSYS);
  };
  if (frame.info && is_fault(*frame.info)) {
    return frame.info;
  }
  // The frame of a signal a process sent (SIGABRT a runtime's handler raised, a kill): the
  // sigcontext's trap number is then the thread's last fault, taken at another pc than this
  // frame's. Without SA_SIGINFO the kernel writes no siginfo and the bytes there are the stack's
  // (faulthandler installs its handler so): only a siginfo of a sender, errno 0, counts as one.
  if (frame.info && frame.info->err == 0 &&
      (frame.info->code == SI_USER || frame.info->code == SI_TKILL ||
       frame.info->code == SI_QUEUE)) {
    return std::nullopt;
  }
  SigInfo s;
  switch (frame.trapno) {
  case 14: // #PF; error code bit 0: the page was present (a protection fault)
    s.signo = SIGSEGV;
    s.code = (frame.err & 1) != 0 ? SEGV_ACCERR : SEGV_MAPERR;
    s.fault_address = frame.cr2;
    break;
  case 13: // #GP
    s.signo = SIGSEGV;
    s.code = SI_KERNEL;
    break;
  case 0: // #DE
    s.signo = SIGFPE;
    s.code = FPE_INTDIV;
    s.fault_address = frame.pc;
    break;
  case 6: // #UD
    s.signo = SIGILL;
    s.code = ILL_ILLOPN;
    s.fault_address = frame.pc;
    break;
  case 3: // #BP
    s.signo = SIGTRAP;
    s.code = TRAP_BRKPT;
    break;
  case 17: // #AC
    s.signo = SIGBUS;
    s.code = BUS_ADRALN;
    break;
  default:
    return std::nullopt;
  }
  return s;
}

std::string_view x86_64_syscall_name(int64_t nr) {
  if (nr < 0 || static_cast<uint64_t>(nr) >= k_x86_64_syscalls.size()) {
    return {};
  }
  return k_x86_64_syscalls[static_cast<size_t>(nr)];
}

std::string_view audit_arch_name(uint32_t arch) {
  switch (arch) {
  case 0xc000003eu: // AUDIT_ARCH_X86_64
    return "x86_64";
  case 0x40000003u: // AUDIT_ARCH_I386
    return "i386";
  case 0xc00000b7u: // AUDIT_ARCH_AARCH64
    return "aarch64";
  case 0x40000028u: // AUDIT_ARCH_ARM
    return "arm";
  default:
    return {};
  }
}

} // namespace common
