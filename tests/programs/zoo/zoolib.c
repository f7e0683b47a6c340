#include "zoolib.h"

static volatile int g_lib_sink;

__attribute__((noinline)) static void zoolib_inner(volatile int* p) {
  *p = 42;
  g_lib_sink = 1;
}

void zoolib_crash(volatile int* p) {
  zoolib_inner(p);
  g_lib_sink = 2;
}
