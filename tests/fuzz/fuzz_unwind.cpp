// libFuzzer target for the unwinder (built by run_fuzz_unwind.sh): hostile registers and stacks
// (cycles, huge frames, a stack pointer going down, return addresses into the middle of code)
// against real modules — this process's own executable and libraries, with their real CFI —
// so libdwfl's CFI interpreter, the frame-pointer walk and the stack scan all run on them.
//
// Input: 4 bytes thread count; then per thread 17 little-endian words (rax … r15, rip, with
// rsp among them) and a stack of up to 4 KiB; rip and rsp are folded into the modules' text and
// the stack window so most inputs reach the unwinder's interesting paths. Signal frames the
// window holds (find_signal_frames) are kept as the scanner keeps them, their interrupted sp
// given the same bytes as a second window, and original_fault() looks through them.
#include "common/crash/analysis.hpp"
#include "common/crash/elf_notes.hpp"
#include "common/crash/sigframe.hpp"
#include "common/crash/symbolize.hpp"
#include "common/crash/unwind.hpp"

#include <elf.h>

#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Modules {
  std::vector<common::FileMapping> files;
  std::map<std::string, std::string> build_ids;
  std::vector<std::pair<uint64_t, uint64_t>> text; // executable ranges
};

// Our own mappings as NT_FILE would list them.
Modules own_modules() {
  Modules m;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, path;
    in >> range >> perms >> offset >> dev >> inode >> path;
    if (path.empty() || path[0] != '/') {
      continue;
    }
    common::FileMapping f;
    f.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    f.end = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
    f.file_offset = std::stoull(offset, nullptr, 16);
    f.path = path;
    if (perms.find('x') != std::string::npos) {
      m.text.emplace_back(f.start, f.end);
    }
    if (!m.build_ids.contains(path)) {
      if (auto id = common::read_build_id(path)) {
        m.build_ids.emplace(path, *id);
      }
    }
    m.files.push_back(std::move(f));
  }
  return m;
}

uint64_t word(const uint8_t*& p, size_t& n) {
  uint64_t v = 0;
  const size_t k = n < 8 ? n : 8;
  std::memcpy(&v, p, k);
  p += k;
  n -= k;
  return v;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Modules modules = own_modules();
  constexpr uint64_t k_stack_base = 0x7ffd00000000;
  common::CoreFacts facts;
  facts.is_elf = true;
  facts.machine = "x86_64";
  facts.files = modules.files;
  facts.build_ids = modules.build_ids;
  common::group_modules(facts, [](const common::FileMapping& f) {
    return std::any_of(modules.text.begin(), modules.text.end(),
                       [&](const auto& t) { return t.first == f.start; });
  });
  const uint8_t* p = data;
  size_t n = size;
  const uint64_t threads = 1 + word(p, n) % 4;
  for (uint64_t t = 0; t < threads && n > 0; ++t) {
    common::ThreadState s;
    s.tid = static_cast<int64_t>(t + 1);
    s.gregs.assign(27, 0);
    for (size_t r = 0; r < 27; ++r) {
      s.gregs[r] = word(p, n);
    }
    // rip (16) into some module's text, rsp (19) and rbp (4) into the stack window, unless the
    // input's top bit asks for the raw hostile value.
    if (!modules.text.empty() && (s.gregs[16] >> 63) == 0) {
      const auto& [lo, hi] = modules.text[s.gregs[16] % modules.text.size()];
      s.gregs[16] = lo + (s.gregs[16] >> 8) % (hi - lo);
    }
    const size_t stack_size = n < 4096 ? n : 4096;
    const uint64_t base = k_stack_base + t * 0x100000;
    if ((s.gregs[19] >> 63) == 0) {
      s.gregs[19] = base;
    }
    if ((s.gregs[4] >> 63) == 0) {
      s.gregs[4] = base + (s.gregs[4] % (stack_size + 1));
    }
    s.pc = s.gregs[16];
    s.sp = s.gregs[19];
    s.stack_base = base;
    s.stack.assign(reinterpret_cast<const std::byte*>(p),
                   reinterpret_cast<const std::byte*>(p) + stack_size);
    p += stack_size;
    n -= stack_size;
    s.signal_frames = common::find_signal_frames(s.stack, base, EM_X86_64, [&](uint64_t a) {
      for (const auto& [lo, hi] : modules.text) {
        if (a >= lo && a < hi) {
          return true;
        }
      }
      return false;
    });
    if (s.signal_frames.size() > common::k_max_signal_frames) {
      std::abort();
    }
    if (!s.signal_frames.empty()) {
      s.interrupted_base = s.signal_frames[0].sp;
      s.interrupted_stack = s.stack;
    }
    facts.thread_states.push_back(std::move(s));
  }
  common::UnwindOptions options;
  options.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  const auto traces = common::unwind_threads(facts, options);
  if (traces.size() != facts.thread_states.size()) {
    std::abort();
  }
  for (const auto& t : traces) {
    if (t.frames.size() > options.max_frames) {
      std::abort(); // the cap holds whatever the input
    }
  }
  // As if the process had raised the signal itself.
  facts.pid = 1;
  facts.sender_pid = 1;
  facts.si_code = SI_TKILL;
  if (const auto o = common::original_fault(facts, traces); o && o->frame) {
    if (*o->frame >= traces[0].frames.size() || !traces[0].frames[*o->frame - 1].signal_frame) {
      std::abort();
    }
  }
  return 0;
}
