/* A stand-in for a bug in libdw that runs attacker code in the analysis child: preloaded into
 * the handler (LD_PRELOAD), it wraps dwfl_begin() and, each time the analysis starts, tries what
 * such code would try with the child's authority. Each attempt that works sets one bit:
 *
 *   1  read PC_HOOK_SECRET (a store file only the store user may read)
 *   2  create a file in PC_HOOK_DIR (the store)
 *   4  signal PC_HOOK_VICTIM (kill with signal 0: permission and reach, nothing delivered)
 *   8  fork (the grandchild names itself "pc-hook-orphan" and outlives the analysis)
 *  16  create an AF_INET socket
 *  32  open a file by path (PC_HOOK_PATH)
 *  64  connect to 127.0.0.1:PC_HOOK_PORT (the test listens there)
 *
 * With PC_HOOK_MODE=exit the child then exits with status 100 + the bits, which the record's
 * handler.analysis shows ("exited with status N"); otherwise the analysis goes on as usual.
 *
 * With PC_HOOK_MODE=ids it attempts nothing and exits with 100 + what is wrong with its ids:
 *
 *   1  a real, effective or saved uid is not PC_HOOK_UID
 *   2  a real, effective or saved gid is not PC_HOOK_GID
 *   4  it has supplementary groups
 *   8  a uid is PC_HOOK_STORE_UID (the store user's) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef void* (*dwfl_begin_fn)(const void*);

static int attempts(void) {
  int bits = 0;
  const char* secret = getenv("PC_HOOK_SECRET");
  if (secret) {
    int fd = open(secret, O_RDONLY | O_CLOEXEC);
    char buf[64];
    if (fd >= 0 && read(fd, buf, sizeof buf) > 0)
      bits |= 1;
    if (fd >= 0)
      close(fd);
  }
  const char* dir = getenv("PC_HOOK_DIR");
  if (dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/planted-by-hook", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      bits |= 2;
      close(fd);
    }
  }
  const char* victim = getenv("PC_HOOK_VICTIM");
  if (victim && kill((pid_t)atoi(victim), 0) == 0)
    bits |= 4;
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_NAME, "pc-hook-orphan", 0, 0, 0);
    /* In exit mode the result pipe must close with the child, for its status to be read; in
     * the other mode the grandchild holds it, as a real one would. */
    const char* m = getenv("PC_HOOK_MODE");
    if (m && strcmp(m, "exit") == 0)
      close_range(3, ~0U, 0);
    for (int i = 0; i < 600; ++i)
      sleep(1);
    _exit(0);
  }
  if (pid > 0)
    bits |= 8;
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    bits |= 16;
    const char* port = getenv("PC_HOOK_PORT");
    if (port) {
      struct sockaddr_in a;
      memset(&a, 0, sizeof a);
      a.sin_family = AF_INET;
      a.sin_port = htons((unsigned short)atoi(port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(s, (struct sockaddr*)&a, sizeof a) == 0)
        bits |= 64;
    }
    close(s);
  }
  const char* path = getenv("PC_HOOK_PATH");
  if (path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      bits |= 32;
      close(fd);
    }
  }
  return bits;
}

static int wrong_ids(void) {
  uid_t u[3];
  gid_t g[3];
  const char* want_uid = getenv("PC_HOOK_UID");
  const char* want_gid = getenv("PC_HOOK_GID");
  const char* store_uid = getenv("PC_HOOK_STORE_UID");
  int bits = 0;
  if (getresuid(&u[0], &u[1], &u[2]) != 0 || getresgid(&g[0], &g[1], &g[2]) != 0)
    return 15;
  for (int i = 0; i < 3; ++i) {
    if (!want_uid || u[i] != (uid_t)atol(want_uid))
      bits |= 1;
    if (!want_gid || g[i] != (gid_t)atol(want_gid))
      bits |= 2;
    if (!store_uid || u[i] == (uid_t)atol(store_uid))
      bits |= 8;
  }
  if (getgroups(0, NULL) != 0)
    bits |= 4;
  return bits;
}

void* dwfl_begin(const void* callbacks) {
  const char* ids = getenv("PC_HOOK_MODE");
  if (ids && strcmp(ids, "ids") == 0)
    _exit(100 + wrong_ids());
  const int bits = attempts();
  const char* mode = getenv("PC_HOOK_MODE");
  if (mode && strcmp(mode, "exit") == 0)
    _exit(100 + bits);
  dwfl_begin_fn real = (dwfl_begin_fn)dlsym(RTLD_NEXT, "dwfl_begin");
  return real ? real(callbacks) : NULL;
}
