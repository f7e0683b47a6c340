// py_stacks: the Python stack walker on a live process or a core, its result as the record's
// `python` section (JSON) or as faulthandler prints it.
//   py_stacks --pid PID [--traceback]      reads /proc/PID/mem (the process should be stopped)
//   py_stacks --core FILE --maps FILE      a core, with the /proc/PID/maps saved when it was taken
//   py_stacks --layout MINOR               the 3.MINOR offset table, as python_offsets.c prints it
#include "common/crash/python/layout.hpp"
#include "common/crash/python/memory.hpp"
#include "common/crash/python/walker.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace crash::python;

namespace {

struct MapLine {
  uint64_t start, end, offset;
  std::string path;
};

std::vector<MapLine> read_maps(const std::string& path) {
  std::ifstream in(path);
  std::vector<MapLine> out;
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long s, e, off;
    char perms[8], dev[16];
    unsigned long inode;
    int n = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %15s %lu %n", &s, &e, perms, &off, dev,
                    &inode, &n) >= 6) {
      out.push_back({s, e, off, n > 0 ? line.substr(static_cast<size_t>(n)) : ""});
    }
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace

int main(int argc, char** argv) {
  std::string pid, core, maps_path;
  bool traceback = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--pid" && i + 1 < argc) {
      pid = argv[++i];
    } else if (a == "--core" && i + 1 < argc) {
      core = argv[++i];
    } else if (a == "--maps" && i + 1 < argc) {
      maps_path = argv[++i];
    } else if (a == "--traceback") {
      traceback = true;
    } else if (a == "--layout" && i + 1 < argc) {
      const auto l = table_layout(static_cast<unsigned>(std::stoul(argv[++i])));
      if (!l) {
        return 1;
      }
      std::cout << describe(*l);
      return 0;
    } else {
      std::cerr << "usage: py_stacks --pid PID | --core FILE --maps FILE [--traceback]\n";
      return 2;
    }
  }
  if (!pid.empty()) {
    maps_path = "/proc/" + pid + "/maps";
  }
  const std::vector<MapLine> maps = read_maps(maps_path);
  // The module holding _PyRuntime: the first mapped file that has it.
  std::vector<int> fds;
  std::string module;
  PythonSymbols symbols;
  uint64_t bias = 0;
  for (const MapLine& m : maps) {
    if (m.path.empty() || m.path[0] != '/' || m.offset != 0 || !module.empty()) {
      continue;
    }
    const int fd = ::open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    if (auto s = read_python_symbols(fd)) {
      symbols = *s;
      module = m.path;
      bias = s->pie ? m.start - s->first_load_vaddr : 0;
    }
    ::close(fd);
  }
  if (module.empty()) {
    // A Python 2 or a 3 before 3.7 has no _PyRuntime: recorded as unsupported, not guessed at.
    for (const MapLine& m : maps) {
      const std::string base = m.path.substr(m.path.rfind('/') + 1);
      if (base.starts_with("python") || base.starts_with("libpython")) {
        PythonStacks old;
        old.status = PyStatus::unsupported;
        old.module = m.path;
        old.detail = "no _PyRuntime: a Python before 3.7";
        std::cout << to_json(old).dump(2) << "\n";
        return 0;
      }
    }
    std::cerr << "no module with _PyRuntime\n";
    return 1;
  }
  PythonStacks stacks;
  if (!pid.empty()) {
    const int mem = ::open(("/proc/" + pid + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (mem < 0) {
      std::perror("open mem");
      return 1;
    }
    ProcMemReader reader(mem, parse_proc_maps(slurp(maps_path)));
    stacks = walk_python(reader, symbols, bias, module);
  } else {
    const int core_fd = ::open(core.c_str(), O_RDONLY | O_CLOEXEC);
    std::vector<CoreFileReader::FileMapping> files;
    for (const MapLine& m : maps) {
      if (!m.path.empty() && m.path[0] == '/') {
        const int fd = ::open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
        files.push_back({m.start, m.end, m.offset, fd});
      }
    }
    auto reader = CoreFileReader::open(core_fd, files);
    if (!reader) {
      std::cerr << reader.error().message << "\n";
      return 1;
    }
    stacks = walk_python(*reader, symbols, bias, module);
  }
  if (traceback) {
    std::cout << render_traceback(stacks, 0);
  } else {
    std::cout << to_json(stacks).dump(2) << "\n";
  }
  return 0;
}
