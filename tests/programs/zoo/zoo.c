// The crash zoo: one program, built several ways by the test build (-O0; -O2
// -fomit-frame-pointer; stripped with a separate debug file), that crashes in the ways whose
// backtraces are hard to get right. `zoo <mode>`; every mode also starts an idle thread named
// "zoo-idle", so every core has more than one thread (thread-abort's worker is "zoo-worker").
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zoolib.h"

#define NOINLINE __attribute__((noinline))

static volatile int g_sink;
static volatile int g_idle_ready;

static void* idle_thread(void* arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "zoo-idle");
  g_idle_ready = 1;
  for (;;) {
    pause();
  }
  return NULL;
}

NOINLINE static void crash_null(volatile int* p) {
  *p = 1; // NULL write
  g_sink = 1;
}

NOINLINE static void segv_level2(volatile int* p) {
  crash_null(p);
  g_sink = 2;
}

NOINLINE static void segv_level1(volatile int* p) {
  segv_level2(p);
  g_sink = 3;
}

NOINLINE static void abort_here(void) {
  abort();
}

NOINLINE static void abort_caller(void) {
  abort_here();
  g_sink = 4;
}

// Leaves return addresses of deep frames in stack memory that the next call reuses.
NOINLINE static int deep(int n) {
  volatile char pad[64];
  pad[0] = (char)n;
  if (n == 0) {
    return pad[0];
  }
  return deep(n - 1) + pad[0];
}

NOINLINE static void dirty_crash(void) {
  volatile char buf[2048]; // uninitialised: holds what deep() left there
  (void)buf;
  *(volatile int*)8 = 1;
}

NOINLINE static void dirty_caller(void) {
  dirty_crash();
  g_sink = 5;
}

NOINLINE static void* thread_worker(void* arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "zoo-worker");
  abort_caller();
  return NULL;
}

NOINLINE static void on_signal(int sig) {
  (void)sig;
  crash_null(NULL);
}

NOINLINE static void signal_caller(void) {
  raise(SIGUSR1);
  g_sink = 6;
}

NOINLINE static void lib_caller(void) {
  zoolib_crash(NULL);
  g_sink = 7;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "segv";
  pthread_t idle;
  pthread_create(&idle, NULL, idle_thread, NULL);
  while (!g_idle_ready) {
    usleep(1000);
  }
  usleep(1000); // into pause()
  if (strcmp(mode, "segv") == 0) {
    segv_level1(NULL);
  } else if (strcmp(mode, "abort") == 0) {
    abort_caller();
  } else if (strcmp(mode, "dirty") == 0) {
    g_sink = deep(40);
    dirty_caller();
  } else if (strcmp(mode, "thread-abort") == 0) {
    pthread_t t;
    pthread_create(&t, NULL, thread_worker, NULL);
    pthread_join(t, NULL);
  } else if (strcmp(mode, "signal") == 0) {
    signal(SIGUSR1, on_signal);
    signal_caller();
  } else if (strcmp(mode, "lib") == 0) {
    lib_caller();
  } else {
    fprintf(stderr, "usage: zoo segv|abort|dirty|thread-abort|signal|lib\n");
    return 2;
  }
  return 0;
}
