// A program that crashes on demand, for tests and benchmarks.
//   crasher segv|abort|fpe|thread|segv-after SECONDS|segv-on-eof|sleep SECONDS [--heap MiB]
//           [--threads N] [--sparse GiB] [--map-dir DIR]
// segv-on-eof and sleep write "ready" to stdout once set up; segv-on-eof then crashes when its
// stdin reaches end of file, so a test starts many and makes them crash at the same moment by
// closing their pipes.
// --heap fills MiB of memory, half compressible text and half random bytes, like a real heap.
// --sparse maps GiB of MAP_NORESERVE memory and touches one page: the kernel streams the whole
// mapping, as zeros, into the core (a cheap way for anyone to make a huge core).
// --map-dir maps every file of DIR (one page each): a core whose NT_FILE lists them all.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern "C" {

// Named, never inlined: tests look for these names as the crash site.
__attribute__((noinline)) void pc_crash_null_write(volatile int* p) {
  *p = 42;
}

__attribute__((noinline)) int pc_crash_divide(int divisor) {
  volatile int d = divisor; // keeps the division (and its SIGFPE) at run time
  return 1000 / d;
}

__attribute__((noinline)) void pc_crash_abort() {
  std::abort();
}

__attribute__((noinline)) void pc_thread_crash() {
  pc_crash_null_write(nullptr);
}

} // extern "C"

namespace {

std::vector<char*> g_heap; // kept reachable so the pages stay in the core

void fill_heap(size_t mib) {
  std::mt19937_64 rng(12345);
  for (size_t i = 0; i < mib; ++i) {
    char* block = static_cast<char*>(std::malloc(1 << 20));
    if (!block) {
      std::perror("malloc");
      std::exit(2);
    }
    if (i % 2 == 0) {
      for (size_t k = 0; k < (1 << 20); ++k) {
        block[k] = "process-core heap text "[k % 23];
      }
    } else {
      for (size_t k = 0; k < (1 << 20); k += 8) {
        const uint64_t v = rng();
        std::memcpy(block + k, &v, 8);
      }
    }
    g_heap.push_back(block);
  }
}

[[noreturn]] void usage() {
  std::fputs("usage: crasher segv|abort|fpe|thread|segv-after SECONDS|segv-on-eof|sleep SECONDS "
             "[--heap MiB] [--threads N] [--sparse GiB] [--map-dir DIR]\n",
             stderr);
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
  }
  const std::string mode = argv[1];
  int seconds = 0;
  int argi = 2;
  if (mode == "segv-after" || mode == "sleep") {
    if (argc < 3) {
      usage();
    }
    seconds = std::atoi(argv[2]);
    argi = 3;
  }
  size_t heap = 0;
  int threads = 4;
  for (; argi < argc; ++argi) {
    const std::string opt = argv[argi];
    if (opt == "--heap" && argi + 1 < argc) {
      heap = std::strtoul(argv[++argi], nullptr, 10);
    } else if (opt == "--sparse" && argi + 1 < argc) {
      const size_t size = std::strtoull(argv[++argi], nullptr, 10) << 30;
      void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) {
        std::perror("mmap");
        std::exit(2);
      }
      static_cast<char*>(p)[4096] = 1;
    } else if (opt == "--map-dir" && argi + 1 < argc) {
      const std::string dir = argv[++argi];
      DIR* d = ::opendir(dir.c_str());
      if (d == nullptr) {
        std::perror("opendir");
        std::exit(2);
      }
      while (const dirent* e = ::readdir(d)) {
        const std::string path = dir + "/" + e->d_name;
        const int fd = e->d_name[0] == '.' ? -1 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED) {
          std::perror("mmap");
          std::exit(2);
        }
        if (fd >= 0) {
          ::close(fd);
        }
      }
      ::closedir(d);
    } else if (opt == "--threads" && argi + 1 < argc) {
      threads = std::atoi(argv[++argi]);
    } else {
      usage();
    }
  }
  fill_heap(heap);
  if (mode == "segv-on-eof" || mode == "sleep") {
    std::puts("ready");
    std::fflush(stdout);
  }

  if (mode == "segv") {
    pc_crash_null_write(nullptr);
  } else if (mode == "abort") {
    pc_crash_abort();
  } else if (mode == "fpe") {
    std::printf("%d\n", pc_crash_divide(0));
  } else if (mode == "thread") {
    // Several threads idle while one of them crashes, once they all run.
    const int idlers = std::max(threads - 2, 0);
    std::latch started(idlers);
    std::atomic<bool> stop{false};
    std::vector<std::thread> idle;
    for (int i = 0; i < idlers; ++i) {
      idle.emplace_back([&] {
        started.count_down();
        while (!stop) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      });
    }
    std::thread crashing([&] {
      started.wait();
      pc_thread_crash();
    });
    crashing.join();
    stop = true;
    for (auto& t : idle) {
      t.join();
    }
  } else if (mode == "segv-after") {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    pc_crash_null_write(nullptr);
  } else if (mode == "segv-on-eof") {
    char buf[256];
    while (::read(STDIN_FILENO, buf, sizeof buf) > 0) {
    }
    pc_crash_null_write(nullptr);
  } else if (mode == "sleep") {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    return 0;
  } else {
    usage();
  }
  return 1;
}
