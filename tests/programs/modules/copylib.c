// Maps its own libc a second time, read-only at file offset 0 (as Ruby's crash reporter does to
// print a C backtrace), then aborts: the copy lies below the loader's libc in NT_FILE, and the
// frames in libc must still be attributed to the loader's image.
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int find_libc(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  if (strstr(info->dlpi_name, "/libc.so") != NULL) {
    *(const char**)data = info->dlpi_name;
    return 1;
  }
  return 0;
}

__attribute__((noinline)) static void copy_then_abort(const char* libc) {
  const int fd = open(libc, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    perror(libc);
    exit(2);
  }
  void* copy = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (copy == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  close(fd);
  abort();
}

int main(void) {
  const char* libc = NULL;
  dl_iterate_phdr(find_libc, &libc);
  if (libc == NULL) {
    fputs("libc not found\n", stderr);
    return 2;
  }
  copy_then_abort(libc);
  return 0;
}
