// Crashes the way programs with their own crash handler do, for the signal-frame tests.
//   pc_sigframe nodefer|abort|plain|seccomp [thread|thread-early]
// main → outer → middle → crash_here writes to address 0x10. `nodefer`: a SIGSEGV handler
// installed with SA_ONSTACK | SA_NODEFER on a sigaltstack puts the default action back and
// re-raises SIGSEGV (faulthandler's and the crash reporters' pattern); `abort`: the handler
// (SA_ONSTACK, no SA_NODEFER) calls abort(); `plain`: no handler, the same fault. `thread` runs
// outer() in a second thread, with its own alternate stack; `thread-early` maps that alternate
// stack before the thread is created, so it lies above the thread's stack (mmap hands out
// addresses downwards) and comes after it in the core. `seccomp`: a filter that kills the
// process on chown(2) (SECCOMP_RET_KILL_PROCESS: SIGSYS with a core), then chown.
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int g_mode_abort;

__attribute__((noinline)) void crash_here(void) {
  *(volatile int*)0x10 = 1;
}

__attribute__((noinline)) void middle(void) {
  crash_here();
  __asm__ volatile("" ::: "memory"); // not a tail call
}

__attribute__((noinline)) void outer(void) {
  middle();
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void on_segv(int signo) {
  if (g_mode_abort) {
    abort();
  }
  signal(signo, SIG_DFL);
  raise(signo);
}

static void* g_early_stack;

static void install(int nodefer) {
  // malloc, like faulthandler: a heap alternate stack, below the thread stacks.
  stack_t ss = {.ss_sp = g_early_stack ? g_early_stack : malloc(1 << 16),
                .ss_size = 1 << 16,
                .ss_flags = 0};
  if (ss.ss_sp == NULL || sigaltstack(&ss, NULL) != 0) {
    perror("sigaltstack");
    exit(2);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sa.sa_flags = SA_ONSTACK | (nodefer ? SA_NODEFER : 0);
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, NULL);
}

static int g_handler = -1; // -1 none, 0 abort, 1 nodefer

static void* thread_main(void* arg) {
  (void)arg;
  if (g_handler >= 0) {
    install(g_handler);
  }
  outer();
  return NULL;
}

static void seccomp_chown(void) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_chown, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    perror("seccomp");
    exit(2);
  }
  syscall(__NR_chown, "/nonexistent", 0, 0);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s nodefer|abort|plain|seccomp [thread]\n", argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  if (strcmp(mode, "seccomp") == 0) {
    seccomp_chown();
    return 1;
  }
  g_mode_abort = strcmp(mode, "abort") == 0;
  g_handler = strcmp(mode, "plain") == 0 ? -1 : strcmp(mode, "nodefer") == 0 ? 1 : 0;
  if (argc > 2 && strcmp(argv[2], "thread-early") == 0) {
    g_early_stack =
        mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (g_early_stack == MAP_FAILED) {
      perror("mmap");
      return 2;
    }
  }
  if (argc > 2 && strncmp(argv[2], "thread", 6) == 0) {
    pthread_t t;
    pthread_create(&t, NULL, thread_main, NULL);
    pthread_join(t, NULL);
    return 1;
  }
  if (g_handler >= 0) {
    install(g_handler);
  }
  outer();
  return 1;
}
