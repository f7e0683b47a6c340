// A program linked without a GNU build-id (-Wl,--build-id=none) that crashes in its own code:
// its module is identified by the first page of the file and still named from its symbols.
#include <stdio.h>

__attribute__((noinline)) int nobuildid_crash(volatile int* p) {
  return *p;
}

__attribute__((noinline)) int nobuildid_caller(volatile int* p) {
  return nobuildid_crash(p) + 1;
}

int main(int argc, char** argv) {
  (void)argv;
  volatile int* p = argc > 5 ? (volatile int*)&argc : NULL;
  printf("%d\n", nobuildid_caller(p));
  return 0;
}
