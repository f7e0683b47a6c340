#include "common/sandbox/analysis_sandbox.hpp"

#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace sandbox {

namespace {

// Only tests set this (the kernel starts the handler with an empty environment): the name of a
// step to treat as failed, so that failing closed can be seen where the kernel would allow all.
// It can only take the analysis away, never a step of the sandbox.
constexpr const char* k_fault_env = "PROCESS_CORE_TEST_SANDBOX_FAULT";

bool faulted(std::string_view step) {
  const char* want = std::getenv(k_fault_env);
  return want != nullptr && step == want;
}

// An empty, read-only tmpfs as / and as the working directory: a path that reaches the kernel
// despite the filter (a syscall it allows that takes one) resolves to nothing of the host's.
bool empty_root() {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return false;
  }
  // Any directory will do as the mount point: after pivot_root nothing of it stays visible.
  if (::mount("process-core-analysis", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=4k,nr_inodes=2,mode=0555") != 0) {
    return false;
  }
  // pivot_root(".", ".") stacks the old root on the new one; detaching "." then drops the old
  // root and every mount under it (the way rootless container runtimes do it).
  if (::chdir("/tmp") != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0 ||
      ::umount2(".", MNT_DETACH) != 0 || ::chdir("/") != 0) {
    return false;
  }
  return ::mount(nullptr, "/", nullptr,
                 MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0;
}

// The capabilities the new user namespace gave its creator, all of them, gone.
bool drop_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  return ::syscall(SYS_capset, &header, data) == 0;
}

// What the analysis does: libdw, libelf, libdeflate, liblzma and the allocator over the
// descriptors it was handed. Everything else (open, fork and clone, kill, socket, ptrace,
// mount, ioctl, ...) fails with EPERM: a library probing for something gets an error it handles,
// not a killed analysis.
bool load_filter(int result_fd) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (ctx == nullptr) {
    return false;
  }
  bool ok = true;
  auto allow = [&](int nr) { ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) == 0; };
  for (const int nr :
       {SCMP_SYS(read), SCMP_SYS(pread64), SCMP_SYS(readv), SCMP_SYS(preadv), SCMP_SYS(lseek),
        SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fstatfs), SCMP_SYS(close),
        SCMP_SYS(dup), SCMP_SYS(fcntl), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect),
        SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(futex),
        SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(getpid), SCMP_SYS(gettid),
        SCMP_SYS(sysinfo), SCMP_SYS(getrandom), SCMP_SYS(sched_yield), SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction), SCMP_SYS(restart_syscall), SCMP_SYS(exit),
        SCMP_SYS(exit_group),
        // Its own ids may be read (the tests check them), not changed.
        SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
        SCMP_SYS(getresuid), SCMP_SYS(getresgid), SCMP_SYS(getgroups),
        // prepare_debug_file: the rewritten debug file is an anonymous memfd, written with pwrite
        // and sealed; no path is involved.
        SCMP_SYS(memfd_create), SCMP_SYS(pwrite64), SCMP_SYS(ftruncate)}) {
    allow(nr);
  }
  // The result, to its pipe only.
  ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(write), 1,
                              SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(result_fd))) == 0;
  // Its own limits and dumpable flag may be read (glibc and the tests do), not changed.
  ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 2, SCMP_A0(SCMP_CMP_EQ, 0),
                              SCMP_A2(SCMP_CMP_EQ, 0)) == 0;
  ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                              SCMP_A0(SCMP_CMP_EQ, PR_GET_DUMPABLE)) == 0;
  // abort() raises SIGABRT at itself: its own pid and tid only, no other process.
  const auto self = static_cast<scmp_datum_t>(::getpid());
  ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 2, SCMP_A0(SCMP_CMP_EQ, self),
                              SCMP_A1(SCMP_CMP_EQ, self)) == 0;
  ok = ok && !faulted("seccomp") && seccomp_load(ctx) == 0;
  seccomp_release(ctx);
  return ok;
}

} // namespace

std::string describe(SandboxFailure step) {
  switch (step) {
  case SandboxFailure::none:
    return {};
  case SandboxFailure::namespaces:
    return "sandbox unavailable: could not create the analysis namespaces";
  case SandboxFailure::root:
    return "sandbox unavailable: could not give the analysis an empty root";
  case SandboxFailure::credentials:
    return "sandbox unavailable: could not drop the analysis child's privileges";
  case SandboxFailure::seccomp:
    return "sandbox unavailable: could not load the seccomp filter";
  case SandboxFailure::user:
    return "sandbox unavailable: could not switch the analysis to its own uid";
  }
  return "sandbox unavailable";
}

SandboxFailure isolate() {
  // The user namespace comes first within the one call: it owns the others, so an unprivileged
  // handler (the store user) may create them. The uid and gid it is seen with outside stay the
  // store user's; what it could do with them is what the filter and the empty root take away.
  if (faulted("namespaces") || ::unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID |
                                         CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
    return SandboxFailure::namespaces;
  }
  // New credentials reset the dumpable flag to fs.suid_dumpable (commit_creds): clear it again,
  // or with suid_dumpable 1 any process of the store user could ptrace the analysis.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return SandboxFailure::namespaces;
  }
  return SandboxFailure::none;
}

SandboxFailure confine(int result_fd) {
  if (faulted("root") || !empty_root()) {
    return SandboxFailure::root;
  }
  // No new process (RLIMIT_NPROC 0 refuses fork and clone even before the filter does), no
  // capability left from the new user namespace, nothing gained by an exec.
  const rlimit none{0, 0};
  if (faulted("credentials") || ::setrlimit(RLIMIT_NPROC, &none) != 0 || !drop_capabilities() ||
      ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return SandboxFailure::credentials;
  }
  return load_filter(result_fd) ? SandboxFailure::none : SandboxFailure::seccomp;
}

} // namespace sandbox
