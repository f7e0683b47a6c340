// pc_deny CLASS COMMAND [ARG...]: runs COMMAND under a seccomp filter that fails one class of
// system calls, the way a systemd unit's SystemCallFilter= (or its PrivateUsers= mapping) makes
// them fail, so tests see what a sandboxed corectl does without a systemd:
//   chown  the chown family fails with EPERM (SystemCallFilter=~@privileged contains @chown);
//   xattr  setting extended attributes fails with EINVAL, as writing back an ACL entry of a
//          user that the unit's user namespace does not map does (PrivateUsers=yes);
//   unlink removing a name fails with EPERM, as in a store whose files cannot be removed.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

namespace {

#if defined(__x86_64__)
constexpr unsigned k_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned k_arch = AUDIT_ARCH_AARCH64;
#else
#error "pc_deny: add this architecture's AUDIT_ARCH_ value"
#endif

enum class Denied { chown, xattr, unlink };

std::vector<long> syscalls_of(Denied what) {
  switch (what) {
  case Denied::chown:
    return {
#ifdef __NR_chown
        __NR_chown,
#endif
#ifdef __NR_lchown
        __NR_lchown,
#endif
        __NR_fchown, __NR_fchownat};
  case Denied::xattr:
    return {__NR_setxattr, __NR_lsetxattr, __NR_fsetxattr};
  case Denied::unlink:
    return {
#ifdef __NR_unlink
        __NR_unlink,
#endif
        __NR_unlinkat};
  }
  return {};
}

// Fails `numbers` with `err`; any other call, and any call of another architecture, is allowed
// (a foreign architecture's numbers mean other calls: those are not what this emulates).
bool install(const std::vector<long>& numbers, int err) {
  std::vector<sock_filter> prog;
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, k_arch, 1, 0));
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  for (long nr : numbers) {
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K,
                            SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)));
  }
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) == 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fputs("usage: pc_deny chown|xattr|unlink COMMAND [ARG...]\n", stderr);
    return 2;
  }
  const std::string_view cls = argv[1];
  Denied what;
  if (cls == "chown") {
    what = Denied::chown;
  } else if (cls == "xattr") {
    what = Denied::xattr;
  } else if (cls == "unlink") {
    what = Denied::unlink;
  } else {
    std::fprintf(stderr, "pc_deny: unknown class '%s'\n", argv[1]);
    return 2;
  }
  if (!install(syscalls_of(what), what == Denied::xattr ? EINVAL : EPERM)) {
    std::fprintf(stderr, "pc_deny: Failed to install the seccomp filter: %s\n",
                 std::strerror(errno));
    return 1;
  }
  ::execvp(argv[2], argv + 2);
  std::fprintf(stderr, "pc_deny: Failed to run '%s': %s\n", argv[2], std::strerror(errno));
  return 127;
}
