// The streaming ELF core scanner, on synthetic cores built here (no kernel needed).
#include "common/base/bytes.hpp"
#include "common/base/hex.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/elf_notes.hpp"
#include "common/crash/symbolize.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <dlfcn.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

using common::CoreFacts;
using common::CoreScanner;
using Bytes = std::vector<std::byte>;

namespace {

void put(Bytes& b, size_t at, uint64_t v, size_t width) {
  if (b.size() < at + width) {
    b.resize(at + width);
  }
  for (size_t i = 0; i < width; ++i) {
    b[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
  }
}
void put_str(Bytes& b, size_t at, std::string_view s) {
  if (b.size() < at + s.size()) {
    b.resize(at + s.size());
  }
  std::memcpy(b.data() + at, s.data(), s.size());
}
void append(Bytes& b, const Bytes& more) {
  b.insert(b.end(), more.begin(), more.end());
}
void pad4(Bytes& b) {
  b.resize((b.size() + 3) & ~size_t{3});
}

Bytes note(std::string_view name, uint32_t type, const Bytes& desc) {
  Bytes n;
  put(n, 0, name.size() + 1, 4);
  put(n, 4, desc.size(), 4);
  put(n, 8, type, 4);
  put_str(n, 12, name);
  n.push_back(std::byte{0});
  pad4(n);
  append(n, desc);
  pad4(n);
  return n;
}

Bytes prstatus(uint16_t machine, int32_t tid, uint64_t pc, uint64_t sp, uint64_t lr = 0) {
  Bytes d(machine == common::elf::k_em_aarch64 ? 392 : 336);
  put(d, 0, 11, 4);
  put(d, 12, 11, 2);
  put(d, 32, static_cast<uint32_t>(tid), 4);
  put(d, 36, 1, 4);
  if (machine == common::elf::k_em_aarch64) {
    put(d, 112 + 30 * 8, lr, 8);
    put(d, 112 + 31 * 8, sp, 8);
    put(d, 112 + 32 * 8, pc, 8);
  } else {
    put(d, 112 + 16 * 8, pc, 8);
    put(d, 112 + 19 * 8, sp, 8);
  }
  return d;
}

Bytes siginfo(int32_t signo, int32_t code, uint64_t addr_or_pid, uint32_t uid = 0) {
  Bytes d(128);
  put(d, 0, static_cast<uint32_t>(signo), 4);
  put(d, 8, static_cast<uint32_t>(code), 4);
  put(d, 16, addr_or_pid, 8);
  if (uid != 0) {
    put(d, 20, uid, 4);
  }
  return d;
}

Bytes prpsinfo(int32_t pid, uint32_t uid, std::string_view fname, std::string_view args) {
  Bytes d(136);
  put(d, 16, uid, 4);
  put(d, 20, uid + 1, 4);
  put(d, 24, static_cast<uint32_t>(pid), 4);
  put_str(d, 40, fname.substr(0, 16));
  put_str(d, 56, args.substr(0, 80));
  return d;
}

Bytes auxv(std::vector<std::pair<uint64_t, uint64_t>> entries) {
  Bytes d;
  entries.emplace_back(0, 0);
  for (const auto& [k, v] : entries) {
    put(d, d.size(), k, 8);
    put(d, d.size(), v, 8);
  }
  return d;
}

struct FileEntry {
  uint64_t start, end, pages;
  std::string name;
};
Bytes nt_file(const std::vector<FileEntry>& entries, uint64_t count_override = 0,
              bool terminate = true) {
  Bytes d;
  put(d, 0, count_override != 0 ? count_override : entries.size(), 8);
  put(d, 8, 4096, 8);
  for (const auto& e : entries) {
    put(d, d.size(), e.start, 8);
    put(d, d.size(), e.end, 8);
    put(d, d.size(), e.pages, 8);
  }
  for (const auto& e : entries) {
    put_str(d, d.size(), e.name);
    if (terminate) {
      d.push_back(std::byte{0});
    }
  }
  return d;
}

// The first page of a loaded ELF image: header, one PT_NOTE, a GNU build-id note.
Bytes module_image(const Bytes& build_id) {
  Bytes img(4096);
  put_str(img, 0,
          "\x7f"
          "ELF");
  put(img, 4, 2, 1);
  put(img, 5, 1, 1);
  put(img, 16, 3, 2); // ET_DYN
  put(img, 32, 64, 8);
  put(img, 54, 56, 2);
  put(img, 56, 1, 2);
  const Bytes n = note("GNU", 3, build_id);
  put(img, 64, common::elf::k_pt_note, 4);
  put(img, 64 + 8, 0x200, 8);
  put(img, 64 + 32, n.size(), 8);
  std::memcpy(img.data() + 0x200, n.data(), n.size());
  return img;
}

struct Segment {
  uint64_t vaddr, memsz;
  uint32_t flags;
  Bytes data;
};

// Lays a core out as the kernel does: header, PT_NOTE + PT_LOAD headers, notes, page padding,
// PT_LOAD data back to back; with PN_XNUM, section header 0 at the end.
struct CoreBuilder {
  uint16_t machine = common::elf::k_em_x86_64;
  bool xnum = false;
  uint32_t xnum_shinfo_delta = 0; // makes sh_info disagree with the table, when set
  Bytes notes;
  std::vector<Segment> loads;

  Bytes build() const {
    Bytes b(64);
    put_str(b, 0,
            "\x7f"
            "ELF");
    put(b, 4, 2, 1);
    put(b, 5, 1, 1);
    put(b, 6, 1, 1);
    put(b, 16, common::elf::k_et_core, 2);
    put(b, 18, machine, 2);
    put(b, 32, 64, 8);
    put(b, 52, 64, 2);
    put(b, 54, 56, 2);
    const uint64_t segs = 1 + loads.size();
    put(b, 56, xnum ? 0xffff : segs, 2);
    const uint64_t notes_at = 64 + segs * 56;
    uint64_t data_at = (notes_at + notes.size() + 4095) & ~uint64_t{4095};
    Bytes ph;
    put(ph, 0, common::elf::k_pt_note, 4);
    put(ph, 8, notes_at, 8);
    put(ph, 32, notes.size(), 8);
    ph.resize(56);
    uint64_t off = data_at;
    for (const auto& s : loads) {
      const size_t at = ph.size();
      put(ph, at, common::elf::k_pt_load, 4);
      put(ph, at + 4, s.flags, 4);
      put(ph, at + 8, off, 8);
      put(ph, at + 16, s.vaddr, 8);
      put(ph, at + 32, s.data.size(), 8);
      put(ph, at + 40, s.memsz, 8);
      put(ph, at + 48, 4096, 8); // the last field: the entry is 56 bytes
      off += s.data.size();
    }
    append(b, ph);
    append(b, notes);
    b.resize(data_at);
    for (const auto& s : loads) {
      append(b, s.data);
    }
    if (xnum) {
      put(b, 40, b.size(), 8); // e_shoff
      put(b, 58, 64, 2);
      put(b, 60, 1, 2);
      Bytes sh(64);
      put(sh, 44, segs + xnum_shinfo_delta, 4);
      append(b, sh);
    }
    return b;
  }
};

constexpr uint64_t k_exe = 0x555555554000;
constexpr uint64_t k_lib = 0x7f0000000000;
constexpr uint64_t k_stack = 0x7ffc00000000;
const Bytes k_exe_id = {std::byte{0xde}, std::byte{0xad}, std::byte{0xbe}, std::byte{0xef},
                        std::byte{0x01}, std::byte{0x02}, std::byte{0x03}, std::byte{0x04}};
const Bytes k_lib_id = {std::byte{0x11}, std::byte{0x22}, std::byte{0x33}, std::byte{0x44}};

// A two-thread process: exe (r-- page with build-id, r-x text not dumped), libc the same, a
// stack holding a return address into libc's text; pc in the exe's text.
CoreBuilder typical(uint16_t machine = common::elf::k_em_x86_64, uint64_t vdso = 0) {
  CoreBuilder c;
  c.machine = machine;
  const uint64_t pc = k_exe + 0x1000 + 0x139;
  const uint64_t sp = k_stack + 0x1f00;
  append(c.notes, note("CORE", common::elf::k_nt_prstatus,
                       prstatus(machine, 4242, pc, sp, k_lib + 0x1000 + 0x77)));
  append(c.notes, note("CORE", common::elf::k_nt_prpsinfo,
                       prpsinfo(4240, 1000, "crashy", "./crashy --flag ")));
  append(c.notes, note("CORE", common::elf::k_nt_siginfo, siginfo(11, 1, 0)));
  append(c.notes, note("CORE", common::elf::k_nt_auxv,
                       auxv({{6, 4096},
                             {11, 1000},
                             {12, 1000},
                             {13, 1001},
                             {14, 1001},
                             {23, 0},
                             {vdso != 0 ? 33u : 0u, vdso}})));
  append(c.notes, note("CORE", common::elf::k_nt_file,
                       nt_file({{k_exe, k_exe + 0x1000, 0, "/usr/bin/crashy"},
                                {k_exe + 0x1000, k_exe + 0x3000, 1, "/usr/bin/crashy"},
                                {k_lib, k_lib + 0x1000, 0, "/usr/lib/libc.so.6"},
                                {k_lib + 0x1000, k_lib + 0x5000, 1, "/usr/lib/libc.so.6"}})));
  append(c.notes, note("CORE", 2, Bytes(512)));     // NT_FPREGSET
  append(c.notes, note("LINUX", 0x202, Bytes(64))); // NT_X86_XSTATE
  append(c.notes, note("CORE", common::elf::k_nt_prstatus, prstatus(machine, 4243, 1, 2)));
  Bytes stack(0x2000);
  put(stack, 0x1f00 + 0x18, k_lib + 0x1000 + 0x42, 8); // a return address into libc
  put(stack, 0x1f00 + 0x28, 0x1234, 8);                // not code
  c.loads = {{k_exe, 0x1000, 4, module_image(k_exe_id)},
             {k_exe + 0x1000, 0x2000, 5, {}},
             {k_lib, 0x1000, 4, module_image(k_lib_id)},
             {k_lib + 0x1000, 0x4000, 5, {}},
             {k_stack, 0x2000, 6, stack}};
  return c;
}

CoreFacts scan(std::span<const std::byte> core, size_t chunk = 65536) {
  CoreScanner s;
  for (size_t i = 0; i < core.size(); i += chunk) {
    s.observe(core.subspan(i, std::min(chunk, core.size() - i)));
  }
  s.finish();
  return s.facts();
}

CoreFacts scan_random(std::span<const std::byte> core, uint32_t seed) {
  std::mt19937 rng(seed);
  CoreScanner s;
  size_t i = 0;
  while (i < core.size()) {
    const size_t n = std::min<size_t>(
        core.size() - i, std::uniform_int_distribution<size_t>(0, rng() % 3 == 0 ? 3 : 5000)(rng));
    s.observe(core.subspan(i, n));
    i += n;
  }
  s.finish();
  return s.facts();
}

std::string dump(const CoreFacts& f) {
  std::string threads;
  for (const auto& t : f.thread_states) {
    threads += std::to_string(t.tid) + ":" + std::to_string(t.stack_base) + ":" +
               std::to_string(t.stack.size()) + ":" + std::to_string(t.gregs.size()) + ";";
  }
  std::string frames;
  for (const auto& fr : f.frames) {
    frames += std::to_string(fr.address) + ":" + fr.module + ":" +
              std::to_string(fr.module_offset.value_or(0)) + ";";
  }
  return common::crash_to_json(f, common::CrashAnalysis{}).dump() +
         common::mappings_to_json(f).dump() + std::to_string(f.files.size()) + f.fname + f.psargs +
         threads + frames;
}

} // namespace

TEST_CASE("x86_64 core: notes, build-ids, crash site, frames", "[elf_core]") {
  const Bytes core = typical().build();
  const CoreFacts f = scan(core);
  CHECK(f.is_elf);
  CHECK(f.format_error.empty());
  CHECK(f.warnings.empty());
  CHECK(f.machine == "x86_64");
  CHECK(f.phnum == 6);
  CHECK(f.pc == k_exe + 0x1139);
  CHECK(f.sp == k_stack + 0x1f00);
  CHECK(f.tid == 4242);
  CHECK(f.threads == 2);
  CHECK(f.si_signo == 11);
  CHECK(f.si_code == 1);
  CHECK(f.si_code_name == "SEGV_MAPERR");
  CHECK(f.fault_address == 0u);
  CHECK_FALSE(f.sender_pid);
  CHECK(f.pid == 4240);
  CHECK(f.uid == 1000u);
  CHECK(f.gid == 1001u);
  CHECK(f.fname == "crashy");
  CHECK(f.psargs == "./crashy --flag");
  CHECK(f.at_secure == 0u);
  CHECK(f.at_uid == 1000u);
  CHECK(f.at_egid == 1001u);
  REQUIRE(f.files.size() == 4);
  CHECK(f.files[1].file_offset == 0x1000);
  CHECK(f.build_ids.at("/usr/bin/crashy") == "deadbeef01020304");
  CHECK(f.build_ids.at("/usr/lib/libc.so.6") == "11223344");
  CHECK(f.module == "/usr/bin/crashy");
  CHECK(f.module_offset == 0x1139u);
  CHECK(f.build_id == "deadbeef01020304");
  REQUIRE(f.frames.size() == 1);
  CHECK(f.frames[0].address == k_lib + 0x1042);
  CHECK(f.frames[0].module == "/usr/lib/libc.so.6");
  CHECK(f.frames[0].module_offset == 0x1042u);
  CHECK(f.signature_input == "v1|11|1|b:deadbeef01020304+0x1139");
  CHECK(f.signature.size() == 16);
  CHECK(f.expected_size == core.size());
  CHECK(f.received == core.size());
  CHECK_FALSE(f.truncated);

  CHECK_FALSE(f.frames.empty()); // best-effort frames from the stack window
  const auto j = common::crash_to_json(f, common::CrashAnalysis{});
  CHECK(j["pc"] == "0x555555555139");
  CHECK(j["fault_address"] == "0x0");
  CHECK(j["module_offset"] == "0x1139");
  CHECK(j["si_code_name"] == "SEGV_MAPERR");
  CHECK(j["symbol"].is_null());
  const auto m = common::mappings_to_json(f);
  REQUIRE(m.size() == 2);
  CHECK(m[1]["build_id"] == "11223344");
}

TEST_CASE("every thread's registers and a stack window from its sp", "[elf_core]") {
  CoreBuilder c = typical();
  // A third thread whose sp is in the dumped stack segment, below the crashing thread's.
  append(c.notes, note("CORE", common::elf::k_nt_prstatus,
                       prstatus(c.machine, 4244, k_lib + 0x1010, k_stack + 0x1000)));
  const CoreFacts f = scan(c.build());
  REQUIRE(f.thread_states.size() == 3);
  const auto& crashing = f.thread_states[0];
  CHECK(crashing.tid == 4242);
  CHECK(crashing.pc == k_exe + 0x1139);
  REQUIRE(crashing.gregs.size() == 27);
  CHECK(crashing.gregs[16] == k_exe + 0x1139);   // rip
  CHECK(crashing.gregs[19] == k_stack + 0x1f00); // rsp
  // The window runs from sp to the end of the segment (less than the 256 KiB cap).
  CHECK(crashing.stack_base == k_stack + 0x1f00);
  CHECK(crashing.stack.size() == 0x100);
  CHECK(common::read_le<uint64_t>(crashing.stack, 0x18) == k_lib + 0x1042);
  // sp 2 is in no segment: registers, no stack.
  CHECK(f.thread_states[1].tid == 4243);
  CHECK(f.thread_states[1].stack.empty());
  CHECK(f.thread_states[2].tid == 4244);
  CHECK(f.thread_states[2].stack_base == k_stack + 0x1000);
  CHECK(f.thread_states[2].stack.size() == 0x1000);
}

TEST_CASE("threads past 64 are counted, without registers", "[elf_core]") {
  CoreBuilder c = typical();
  for (int i = 0; i < 70; ++i) {
    append(c.notes, note("CORE", common::elf::k_nt_prstatus,
                         prstatus(c.machine, 5000 + i, k_lib + 0x1010, k_stack + 0x1000)));
  }
  const CoreFacts f = scan(c.build());
  CHECK(f.threads == 72);
  CHECK(f.thread_states.size() == 64);
  CHECK(std::find(f.warnings.begin(), f.warnings.end(),
                  "more than 64 threads; no registers for the rest") != f.warnings.end());
  // 62 other threads × 4 KiB from sp to the segment's end, plus the crashing thread's window.
  size_t total = 0;
  for (const auto& t : f.thread_states) {
    total += t.stack.size();
  }
  CHECK(total == 0x100 + 62 * 0x1000);
}

// A crash handler on an alternate stack: the crashing thread's sp is there, an rt_sigframe holds
// the interrupted sp on the thread's stack. `alt` is where the alternate stack is mapped.
CoreBuilder on_alternate_stack(uint64_t alt) {
  CoreBuilder c = typical();
  const uint64_t handler_sp = alt + 0x800;
  c.notes.clear();
  append(c.notes, note("CORE", common::elf::k_nt_prstatus,
                       prstatus(c.machine, 4242, k_lib + 0x1010, handler_sp)));
  append(c.notes, note("CORE", common::elf::k_nt_siginfo, siginfo(6, -6, 0)));
  append(c.notes, note("CORE", common::elf::k_nt_file,
                       nt_file({{k_exe, k_exe + 0x1000, 0, "/usr/bin/crashy"},
                                {k_exe + 0x1000, k_exe + 0x3000, 1, "/usr/bin/crashy"},
                                {k_lib, k_lib + 0x1000, 0, "/usr/lib/libc.so.6"},
                                {k_lib + 0x1000, k_lib + 0x5000, 1, "/usr/lib/libc.so.6"}})));
  Bytes stack(0x1000);
  const size_t f = 0x900;                           // the frame, above the handler's sp
  put(stack, f, k_lib + 0x1050, 8);                 // pretcode: __restore_rt
  put(stack, f + 8, 7, 8);                          // uc_flags
  put(stack, f + 48 + 15 * 8, k_stack + 0x1f00, 8); // rsp
  put(stack, f + 48 + 16 * 8, k_exe + 0x1139, 8);   // rip
  put(stack, f + 48 + 17 * 8, 0x10246, 8);          // eflags
  put(stack, f + 48 + 18 * 8, 0x33, 2);             // cs
  put(stack, f + 48 + 18 * 8 + 6, 0x2b, 2);         // ss
  put(stack, f + 48 + 20 * 8, 14, 8);               // trapno: page fault
  put(stack, f + 48 + 22 * 8, 0x10, 8);             // cr2
  put(stack, f + 48 + 23 * 8, alt + 0xc00, 8);      // fpstate
  c.loads.push_back({alt, 0x1000, 6, stack});
  std::ranges::sort(c.loads, {}, &Segment::vaddr);
  return c;
}

TEST_CASE("a signal frame in the crashing thread's window keeps the stack it interrupted",
          "[elf_core]") {
  const Bytes core = on_alternate_stack(k_lib + 0x100000).build(); // below the thread's stack
  const CoreFacts f = scan(core);
  REQUIRE(!f.thread_states.empty());
  const auto& t = f.thread_states[0];
  REQUIRE(t.signal_frames.size() == 1);
  CHECK(t.signal_frames[0].pc == k_exe + 0x1139);
  CHECK(t.signal_frames[0].sp == k_stack + 0x1f00);
  CHECK(t.signal_frames[0].address == k_lib + 0x100000 + 0x900);
  CHECK(t.interrupted_base == k_stack + 0x1f00);
  CHECK(t.interrupted_stack.size() == 0x100); // to the end of the dumped stack
  CHECK(f.warnings.empty());
  // Whatever the chunking.
  for (const size_t chunk : {size_t{1}, size_t{7}, size_t{4096}}) {
    const CoreFacts g = scan(core, chunk);
    CHECK(g.thread_states[0].interrupted_base == t.interrupted_base);
    CHECK(g.thread_states[0].interrupted_stack == t.interrupted_stack);
    CHECK(g.thread_states[0].signal_frames.size() == 1);
  }
  const CoreFacts r = scan_random(core, 7);
  CHECK(r.thread_states[0].interrupted_stack == t.interrupted_stack);
}

TEST_CASE("an interrupted stack that streamed past before its signal frame is named",
          "[elf_core]") {
  // The alternate stack above the thread's stack, and the highest mapping: nothing guessed.
  const CoreFacts f = scan(on_alternate_stack(k_stack + 0x100000).build());
  REQUIRE(f.thread_states[0].signal_frames.size() == 1);
  CHECK(f.thread_states[0].interrupted_stack.empty());
  CHECK(std::ranges::find(f.warnings, "the stack a signal interrupted precedes its signal frame "
                                      "in the core; not kept") != f.warnings.end());
}

TEST_CASE("aarch64 prstatus layout; lr is the first frame", "[elf_core]") {
  const CoreFacts f = scan(typical(common::elf::k_em_aarch64).build());
  CHECK(f.machine == "aarch64");
  CHECK(f.pc == k_exe + 0x1139);
  CHECK(f.sp == k_stack + 0x1f00);
  CHECK(f.lr == k_lib + 0x1077);
  REQUIRE(f.frames.size() == 2);
  CHECK(f.frames[0].address == k_lib + 0x1077);
  CHECK(f.frames[1].address == k_lib + 0x1042);
}

TEST_CASE("the same facts whatever the chunking", "[elf_core]") {
  for (const bool xnum : {false, true}) {
    CoreBuilder c = typical();
    c.xnum = xnum;
    const Bytes core = c.build();
    const std::string expected = dump(scan(core));
    CHECK(dump(scan(core, 1)) == expected);
    CHECK(dump(scan(core, 7)) == expected);
    for (uint32_t seed = 1; seed <= 20; ++seed) {
      CHECK(dump(scan_random(core, seed)) == expected);
    }
  }
}

TEST_CASE("PN_XNUM: the table ends where the notes begin", "[elf_core]") {
  CoreBuilder c = typical();
  c.xnum = true;
  const Bytes core = c.build();
  const CoreFacts f = scan(core);
  CHECK(f.phnum == 6);
  CHECK(f.warnings.empty());
  CHECK(f.pc == k_exe + 0x1139);
  CHECK(f.build_ids.size() == 2);
  CHECK(f.expected_size == core.size()); // includes the section header at the end
  CHECK_FALSE(f.truncated);
  CHECK(scan(std::span(core).first(core.size() - 1)).truncated);

  SECTION("a disagreeing sh_info is reported") {
    c.xnum_shinfo_delta = 3;
    const CoreFacts g = scan(c.build());
    CHECK(g.phnum == 6);
    REQUIRE(g.warnings.size() == 1);
    CHECK(g.warnings[0].find("PN_XNUM") != std::string::npos);
  }
  SECTION("more than 65535 segments") {
    CoreBuilder big = typical();
    big.xnum = true;
    for (uint64_t i = 0; i < 70000; ++i) {
      big.loads.push_back({0x100000000 + i * 0x1000, 0x1000, 4, {}});
    }
    const CoreFacts g = scan(big.build());
    CHECK(g.phnum == 70006);
    CHECK(g.warnings.empty());
    CHECK(g.module == "/usr/bin/crashy");
  }
}

TEST_CASE("truncated streams keep what arrived", "[elf_core]") {
  const Bytes core = typical().build();
  const CoreFacts full = scan(core);
  for (const size_t cut :
       {size_t{0}, size_t{3}, size_t{63}, size_t{64}, size_t{100}, size_t{64 + 6 * 56}, size_t{600},
        size_t{4096}, size_t{4096 + 100}, size_t{3 * 4096 + 10}, core.size() - 1}) {
    const auto part = std::span(core).first(cut);
    const CoreFacts f = scan(part);
    INFO("cut at " << cut);
    CHECK(f.received == cut);
    if (cut == 0) {
      CHECK(f.format_error == "empty input");
      CHECK_FALSE(f.truncated);
      continue;
    }
    CHECK(f.truncated);
    CHECK(f.expected_size > cut);
    if (cut >= 64 + 6 * 56) {
      CHECK(f.expected_size == core.size());
    }
    if (cut >= 4096) { // all notes arrived
      CHECK(f.pc == full.pc);
      CHECK(f.threads == 2);
      CHECK(f.module == "/usr/bin/crashy");
    }
    CHECK_NOTHROW(common::crash_to_json(f, common::CrashAnalysis{}).dump());
  }
}

TEST_CASE("garbage and foreign ELF files", "[elf_core]") {
  std::mt19937 rng(42);
  for (int i = 0; i < 200; ++i) {
    Bytes junk(static_cast<size_t>(rng() % 5000));
    for (auto& b : junk) {
      b = static_cast<std::byte>(rng());
    }
    if (i % 2 == 0 && junk.size() >= 64) { // a plausible header over random contents
      const Bytes hdr = typical().build();
      std::memcpy(junk.data(), hdr.data(), 64);
    }
    const CoreFacts f = scan(junk, 1 + rng() % 100);
    CHECK_NOTHROW(common::crash_to_json(f, common::CrashAnalysis{}).dump());
    CHECK_NOTHROW(common::mappings_to_json(f).dump());
  }
  Bytes core = typical().build();
  SECTION("not ELF") {
    core[0] = std::byte{'#'};
    CHECK(scan(core).format_error == "not an ELF file");
    CHECK_FALSE(scan(core).is_elf);
  }
  SECTION("32-bit") {
    core[4] = std::byte{1};
    CHECK(scan(core).format_error.find("ELFCLASS64") != std::string::npos);
  }
  SECTION("big-endian") {
    core[5] = std::byte{2};
    CHECK(scan(core).format_error.find("little-endian") != std::string::npos);
  }
  SECTION("not a core") {
    core[16] = std::byte{2};
    const CoreFacts f = scan(core);
    CHECK(f.is_elf);
    CHECK(f.format_error.find("not a core") != std::string::npos);
    CHECK_FALSE(f.pc);
  }
  SECTION("unknown machine: notes without registers") {
    core[18] = std::byte{243};
    core[19] = std::byte{0};
    const CoreFacts f = scan(core);
    CHECK(f.machine == "EM_243");
    CHECK_FALSE(f.pc);
    CHECK(f.si_code_name == "SEGV_MAPERR");
    CHECK(f.threads == 2);
  }
  SECTION("absurd program header offset") {
    put(core, 32, ~uint64_t{0} - 10, 8);
    CHECK_FALSE(scan(core).format_error.empty());
  }
  SECTION("segment sizes that overflow") {
    put(core, 64 + 56 + 32, ~uint64_t{0}, 8); // first PT_LOAD p_filesz
    const CoreFacts f = scan(core);
    CHECK_FALSE(f.warnings.empty());
    CHECK(f.pc);
  }
}

TEST_CASE("hostile notes", "[elf_core]") {
  SECTION("huge n_descsz ends the note walk, not the scan") {
    CoreBuilder c = typical();
    Bytes bad;
    put(bad, 0, 5, 4);
    put(bad, 4, 0xffffffff, 4);
    put(bad, 8, common::elf::k_nt_file, 4);
    put_str(bad, 12, "CORE");
    bad.resize(20);
    Bytes notes = note("CORE", common::elf::k_nt_prstatus, prstatus(62, 7, 0x10, 0x20));
    append(notes, bad);
    c.notes = notes;
    const Bytes core = c.build();
    const CoreFacts f = scan(core);
    CHECK(f.tid == 7);
    CHECK(f.threads == 1);
    CHECK(f.files.empty());
    CHECK_FALSE(f.warnings.empty()); // the segment ended inside a note
    CHECK(dump(scan(core, 1)) == dump(f));
  }
  SECTION("zero-length notes and descriptors") {
    CoreBuilder c = typical();
    c.notes.clear();
    CHECK(scan(c.build()).threads == 0);
    append(c.notes, note("CORE", common::elf::k_nt_prstatus, {}));
    append(c.notes, note("CORE", common::elf::k_nt_siginfo, {}));
    append(c.notes, note("", 0, {}));
    const CoreFacts f = scan(c.build(), 1);
    CHECK(f.threads == 1);
    CHECK_FALSE(f.pc);
    CHECK_FALSE(f.si_signo);
  }
  SECTION("NT_FILE names without NUL, counts that do not fit") {
    const std::vector<FileEntry> entries = {{0x1000, 0x2000, 0, "/a"}, {0x2000, 0x3000, 0, "/b"}};
    auto unterminated = common::decode_nt_file(nt_file(entries, 0, false));
    REQUIRE(unterminated.mappings.size() == 2);
    CHECK(unterminated.mappings[0].path == "/a/b");
    CHECK(unterminated.mappings[1].path.empty());
    for (const uint64_t count : {uint64_t{3}, uint64_t{1} << 40, ~uint64_t{0}, ~uint64_t{0} / 24}) {
      const auto f = common::decode_nt_file(nt_file(entries, count));
      CHECK(f.mappings.empty());
      CHECK_FALSE(f.error.empty());
    }
    CHECK(common::decode_nt_file(Bytes(15)).mappings.empty());
    Bytes zero_page = nt_file(entries);
    put(zero_page, 8, 0, 8);
    CHECK(common::decode_nt_file(zero_page).mappings.empty());
    Bytes long_name = nt_file({{0x1000, 0x2000, 0, std::string(10000, 'x')}});
    CHECK(common::decode_nt_file(long_name).mappings.at(0).path.size() == common::k_max_path);
  }
  SECTION("invalid UTF-8 in names still gives valid JSON") {
    CoreBuilder c = typical();
    c.notes = note("CORE", common::elf::k_nt_prstatus, prstatus(62, 1, k_exe + 0x1001, 0));
    append(c.notes, note("CORE", common::elf::k_nt_prpsinfo, prpsinfo(1, 0, "\xff\xfe", "\xc3")));
    append(c.notes, note("CORE", common::elf::k_nt_file,
                         nt_file({{k_exe, k_exe + 0x3000, 0, "/tmp/\xff\"x\n"}})));
    const CoreFacts f = scan(c.build());
    CHECK(f.module == "/tmp/\xff\"x\n");
    CHECK_NOTHROW(common::crash_to_json(f, common::CrashAnalysis{}).dump());
    CHECK_NOTHROW(common::mappings_to_json(f).dump());
  }
}

TEST_CASE("siginfo: fault address or sender, and code names", "[elf_core]") {
  const auto user = common::decode_siginfo(siginfo(6, -6, 321, 1000));
  REQUIRE(user);
  CHECK(user->sender_pid == 321);
  CHECK(user->sender_uid == 1000u);
  CHECK_FALSE(user->fault_address);
  const auto gp = common::decode_siginfo(siginfo(11, 0x80, 0));
  REQUIRE(gp);
  CHECK_FALSE(gp->fault_address);
  CHECK_FALSE(gp->sender_pid);
  const auto bus = common::decode_siginfo(siginfo(7, 1, 0x1003));
  CHECK(bus->fault_address == 0x1003u);
  CHECK_FALSE(common::decode_siginfo(Bytes(11)));
  CHECK(common::si_code_name(11, 2) == "SEGV_ACCERR");
  CHECK(common::si_code_name(7, 1) == "BUS_ADRALN");
  CHECK(common::si_code_name(8, 1) == "FPE_INTDIV");
  CHECK(common::si_code_name(4, 2) == "ILL_ILLOPN");
  CHECK(common::si_code_name(5, 1) == "TRAP_BRKPT");
  CHECK(common::si_code_name(6, 0) == "SI_USER");
  CHECK(common::si_code_name(11, 0x80) == "SI_KERNEL");
  CHECK(common::si_code_name(6, -6) == "SI_TKILL");
  CHECK(common::si_code_name(10, -1) == "SI_QUEUE");
  CHECK(common::si_code_name(31, 1) == "SYS_SECCOMP");
  CHECK(common::si_code_name(11, 99).empty());
  CHECK(common::si_code_name(6, 1).empty());
}

TEST_CASE("a stream note parser fed in pieces equals the buffer walk", "[elf_core]") {
  Bytes notes = typical().notes;
  struct Collect : common::NoteSink {
    std::vector<std::string> seen;
    bool want(std::string_view, uint32_t) override { return true; }
    void on_note(const common::ElfNote& n) override {
      seen.push_back(std::string(n.name) + "/" + std::to_string(n.type) + "/" +
                     common::hex_bytes(n.desc));
    }
  };
  Collect whole;
  common::NoteIterator it(notes);
  while (const auto n = it.next()) {
    whole.on_note(*n);
  }
  CHECK_FALSE(it.stopped_early());
  for (const size_t piece : {size_t{1}, size_t{5}, size_t{64}}) {
    Collect streamed;
    common::NoteStream s(1 << 20);
    for (size_t i = 0; i < notes.size(); i += piece) {
      s.feed(std::span(notes).subspan(i, std::min(piece, notes.size() - i)), streamed);
    }
    CHECK_FALSE(s.mid_note());
    CHECK(streamed.seen == whole.seen);
  }
}

TEST_CASE("empty facts give all keys, null when unknown", "[elf_core]") {
  const auto j = common::crash_to_json(CoreFacts{}, common::CrashAnalysis{});
  for (const char* key : {"si_code", "si_code_name", "fault_address", "pc", "sp", "tid", "module",
                          "module_offset", "build_id", "symbol", "signature"}) {
    INFO(key);
    REQUIRE(j.contains(key));
    CHECK(j[key].is_null());
  }
  CHECK(j["threads"] == 0);
  CHECK(j.at("stacks").empty());
}

extern "C" __attribute__((noinline)) int pc_test_symbol_target(int x) {
  return x * 3 + 1;
}

TEST_CASE("resolve_symbol on this test binary and on hostile files", "[elf_core][symbolize]") {
  Dl_info info{};
  const auto fn = reinterpret_cast<void*>(&pc_test_symbol_target);
  REQUIRE(dladdr(fn, &info) != 0);
  const uint64_t vaddr =
      reinterpret_cast<uint64_t>(fn) - reinterpret_cast<uint64_t>(info.dli_fbase);
  // GNU ld maps text at file offset == virtual address (see CoreFacts::module_offset).
  // The real path: /proc/self/exe is a symlink, and modules are opened O_NOFOLLOW.
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  CHECK_FALSE(common::resolve_symbol("/proc/self/exe", vaddr, ""));
  const auto sym = common::resolve_symbol(exe, vaddr + 2, "");
  REQUIRE(sym);
  CHECK(sym->name == "pc_test_symbol_target");
  CHECK(sym->offset == 2);
  CHECK_FALSE(sym->verified);
  const auto id = common::read_build_id(exe);
  if (id) {
    CHECK(common::resolve_symbol(exe, vaddr, *id)->verified);
    CHECK_FALSE(common::resolve_symbol(exe, vaddr, "00"));
  }

  test::TempDir dir;
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    Bytes junk = module_image(k_exe_id);
    for (int k = 0; k < 40; ++k) {
      junk[rng() % 200] = static_cast<std::byte>(rng());
    }
    test::spit(dir.path() / "junk",
               std::string(reinterpret_cast<const char*>(junk.data()), junk.size()));
    CHECK_NOTHROW(common::resolve_symbol((dir.path() / "junk").string(), rng() % 5000, ""));
  }
  CHECK_FALSE(common::resolve_symbol("/nonexistent/x", 0, ""));
  CHECK_FALSE(common::resolve_symbol("/dev/zero", 0, ""));
  CHECK_FALSE(common::resolve_symbol(dir.str(), 0, ""));
}

TEST_CASE("mapped-file findings", "[elf_core][symbolize]") {
  test::TempDir dir;
  const auto lib = (dir.path() / "lib.so").string();
  const Bytes img = module_image(k_lib_id);
  test::spit(lib, std::string(reinterpret_cast<const char*>(img.data()), img.size()));
  const std::vector<common::FileMapping> files = {
      {0x1000, 0x2000, 0, lib},
      {0x2000, 0x3000, 0x1000, lib},
      {0x4000, 0x5000, 0, (dir.path() / "gone.so").string()},
      {0x6000, 0x7000, 0, "/usr/lib/old.so (deleted)"}};
  using common::FindingKind;
  auto kinds = [](const std::vector<common::MappingFinding>& v) {
    std::vector<std::pair<std::string, FindingKind>> out;
    for (const auto& x : v) {
      out.emplace_back(x.path, x.kind);
    }
    return out;
  };
  const auto same = common::check_mapped_files(files, {{lib, "11223344"}}, std::nullopt);
  CHECK(kinds(same) == std::vector<std::pair<std::string, FindingKind>>{
                           {(dir.path() / "gone.so").string(), FindingKind::missing},
                           {"/usr/lib/old.so (deleted)", FindingKind::deleted}});
  const auto changed = common::check_mapped_files(
      files, {{lib, "99"}}, std::chrono::system_clock::now() - std::chrono::hours(1));
  const auto k = kinds(changed);
  CHECK(k.at(0) == std::pair<std::string, FindingKind>{lib, FindingKind::replaced});
  CHECK(k.at(1) == std::pair<std::string, FindingKind>{lib, FindingKind::modified_after_start});
  CHECK(k.size() == 4);
  CoreFacts f;
  f.files = files;
  const auto j = common::mappings_to_json(f, changed);
  CHECK(j.size() == 3);
  CHECK(j[0]["findings"].size() == 2);
  CHECK(j[0]["findings"][0]["kind"] == "replaced");
}

namespace {

// The first page of an ELF image with these PT_LOADs (vaddr, offset, filesz, flags) and one
// PT_NOTE holding `notes`.
Bytes image_with(const std::vector<common::ElfImage::Segment>& loads, const Bytes& notes) {
  Bytes img(4096);
  put_str(img, 0,
          "\x7f"
          "ELF");
  put(img, 4, 2, 1);
  put(img, 5, 1, 1);
  put(img, 16, 3, 2); // ET_DYN
  put(img, 32, 64, 8);
  put(img, 54, 56, 2);
  put(img, 56, 1 + loads.size(), 2);
  put(img, 64, common::elf::k_pt_note, 4);
  put(img, 64 + 8, 0x400, 8);
  put(img, 64 + 32, notes.size(), 8);
  for (size_t i = 0; i < loads.size(); ++i) {
    const size_t at = 64 + 56 * (i + 1);
    put(img, at, common::elf::k_pt_load, 4);
    put(img, at + 4, loads[i].flags, 4);
    put(img, at + 8, loads[i].offset, 8);
    put(img, at + 16, loads[i].vaddr, 8);
    put(img, at + 32, loads[i].filesz, 8);
    put(img, at + 40, loads[i].filesz, 8);
  }
  std::memcpy(img.data() + 0x400, notes.data(), notes.size());
  return img;
}

// libc as ld.so maps it: r-- headers, r-x text, r-- rodata, r-- relro + rw- data.
const std::vector<common::ElfImage::Segment> k_libc_loads = {{0, 0, 0x28000, 4},
                                                             {0x28000, 0x28000, 0x175000, 5},
                                                             {0x19d000, 0x19d000, 0x58000, 4},
                                                             {0x1f6000, 0x1f5000, 0x6000, 6}};

std::vector<common::FileMapping> maps(const std::vector<FileEntry>& entries) {
  std::vector<common::FileMapping> out;
  for (const auto& e : entries) {
    out.push_back({e.start, e.end, e.pages * 4096, e.name});
  }
  return out;
}

} // namespace

TEST_CASE("NT_FILE mappings group into the images the loader mapped", "[elf_core][modules]") {
  const std::string libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
  const uint64_t copy = 0x7f0000000000; // the whole file again, read-only (a crash reporter)
  const uint64_t base = 0x7f0000200000; // the loader's libc
  const uint64_t ns2 = 0x7f0000600000;  // dlmopen: libc once more, a real image
  const auto files = maps({
      {copy, copy + 0x21a000, 0, libc},
      {base, base + 0x28000, 0, libc},
      {base + 0x28000, base + 0x19d000, 0x28, libc},
      {base + 0x19d000, base + 0x1f5000, 0x19d, libc},
      {base + 0x1f6000, base + 0x1fa000, 0x1f5, libc},
      {base + 0x1fa000, base + 0x1fc000, 0x1f9, libc},
      {0x7f0000400000, 0x7f0000401000, 0x10, "/var/data/blob"}, // mapped from the middle
      {ns2, ns2 + 0x28000, 0, libc},
      {ns2 + 0x28000, ns2 + 0x19d000, 0x28, libc},
      {ns2 + 0x19d000, ns2 + 0x1f5000, 0x19d, libc},
      {ns2 + 0x1f6000, ns2 + 0x1fa000, 0x1f5, libc},
      {ns2 + 0x1fa000, ns2 + 0x1fc000, 0x1f9, libc},
      {ns2 + 0x1fc000, ns2 + 0x1fd000, 0, libc}, // offset 0 again right after: a new image
  });
  std::vector<size_t> of;
  const auto groups = common::group_mappings(files, of);
  REQUIRE(groups.size() == 5);
  CHECK(of == std::vector<size_t>{0, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3, 4});
  CHECK(groups[0].start == copy);
  CHECK(groups[0].count == 1);
  CHECK(groups[0].header);
  CHECK(groups[1].start == base);
  CHECK(groups[1].end == base + 0x1fc000);
  CHECK(groups[1].first == 1);
  CHECK(groups[1].count == 5);
  CHECK_FALSE(groups[2].header);
  CHECK(groups[3].start == ns2);
  CHECK(groups[3].count == 5);
  CHECK(groups[4].count == 1);

  // Which of them map libc's segments as a loader does: the text executable.
  const auto exec = [&](const common::FileMapping& m) { return m.file_offset == 0x28000; };
  CHECK_FALSE(common::maps_segments(groups[0], files, k_libc_loads, 4096, exec));
  CHECK(common::maps_segments(groups[1], files, k_libc_loads, 4096, exec));
  CHECK(common::maps_segments(groups[3], files, k_libc_loads, 4096, exec));
  CHECK_FALSE(common::maps_segments(groups[4], files, k_libc_loads, 4096, exec));
  // Nothing executable: not an image the loader mapped.
  CHECK_FALSE(common::maps_segments(groups[1], files, k_libc_loads, 4096,
                                    [](const common::FileMapping&) { return false; }));
  // Segments that are not where the headers put them.
  auto moved = k_libc_loads;
  moved[1].offset = 0x29000;
  CHECK_FALSE(common::maps_segments(groups[1], files, moved, 4096, exec));
  CHECK_FALSE(common::maps_segments(groups[1], files, k_libc_loads, 4095, exec));
  CHECK_FALSE(common::maps_segments(groups[1], files, {}, 4096, exec));

  // Adversarial: no other file may sit between two segments of one image, offsets must grow.
  const auto split = maps({{base, base + 0x1000, 0, libc},
                           {base + 0x1000, base + 0x2000, 0, "/other"},
                           {base + 0x2000, base + 0x3000, 2, libc},
                           {base + 0x3000, base + 0x4000, 1, libc}});
  CHECK(common::group_mappings(split, of).size() == 4);
  // Rodata and relro in one file page (a PIE as GNU ld lays it out): one image.
  const std::string exe = "/usr/bin/crashy";
  const auto shared = maps({{k_exe, k_exe + 0x1000, 0, exe},
                            {k_exe + 0x1000, k_exe + 0x2000, 1, exe},
                            {k_exe + 0x2000, k_exe + 0x3000, 2, exe},
                            {k_exe + 0x3000, k_exe + 0x4000, 2, exe},
                            {k_exe + 0x4000, k_exe + 0x5000, 3, exe}});
  const auto pie = common::group_mappings(shared, of);
  REQUIRE(pie.size() == 1);
  const std::vector<common::ElfImage::Segment> pie_loads = {{0, 0, 0x870, 4},
                                                            {0x1000, 0x1000, 0x2e9, 5},
                                                            {0x2000, 0x2000, 0x150, 4},
                                                            {0x3dd0, 0x2dd0, 0x290, 6}};
  CHECK(common::maps_segments(pie[0], shared, pie_loads, 4096, [](const common::FileMapping& m) {
    return m.file_offset == 0x1000;
  }));
  CHECK(common::group_mappings({}, of).empty());
  CHECK(of.empty());
}

TEST_CASE("a read-only copy of a library never takes the loader's place", "[elf_core][modules]") {
  // Ruby's crash reporter maps libc again, read-only at offset 0, below the loader's libc.
  const std::string libc = "/usr/lib/libc.so.6";
  const uint64_t copy = 0x7f0000000000;
  const uint64_t base = 0x7f0000300000;
  const Bytes page = image_with(k_libc_loads, note("GNU", 3, k_lib_id));
  CoreBuilder c;
  const uint64_t pc = base + 0x28000 + 0x62eec;
  append(c.notes, note("CORE", common::elf::k_nt_prstatus,
                       prstatus(common::elf::k_em_x86_64, 7, pc, k_stack + 0x100)));
  append(c.notes, note("CORE", common::elf::k_nt_siginfo, siginfo(6, -6, 7)));
  append(c.notes, note("CORE", common::elf::k_nt_file,
                       nt_file({{copy, copy + 0x21a000, 0, libc},
                                {base, base + 0x28000, 0, libc},
                                {base + 0x28000, base + 0x19d000, 0x28, libc},
                                {base + 0x19d000, base + 0x1f5000, 0x19d, libc},
                                {base + 0x1f6000, base + 0x1fa000, 0x1f5, libc}})));
  c.loads = {{copy, 0x21a000, 4, page},         {base, 0x28000, 4, page},
             {base + 0x28000, 0x175000, 5, {}}, {base + 0x19d000, 0x58000, 4, {}},
             {base + 0x1f5000, 0x4000, 6, {}},  {k_stack, 0x1000, 6, Bytes(0x1000)}};
  const CoreFacts f = scan(c.build());
  REQUIRE(f.modules.size() == 2);
  CHECK_FALSE(f.modules[0].loaded);
  CHECK_FALSE(f.modules[0].executable);
  CHECK(f.modules[1].loaded);
  CHECK(f.modules[1].executable);
  CHECK(f.modules[1].match() == common::ModuleMatch::build_id);
  const common::ModuleGroup* g = common::module_at(f, pc);
  REQUIRE(g != nullptr);
  CHECK(g->start == base);
  CHECK(common::module_at(f, copy + 0x1000) == nullptr); // a copy is no module
  CHECK(f.module == libc);
  CHECK(f.module_offset == 0x28000u + 0x62eec);
  CHECK(f.build_id == "11223344");
  CHECK(f.signature_input == "v1|6|-6|b:11223344+0x8aeec");
  const auto m = common::mappings_to_json(f);
  REQUIRE(m.size() == 1);
  CHECK(m[0]["start"] == common::hex_u64(base));
  CHECK(m[0]["match"] == "build-id");
}

TEST_CASE("modules without a GNU build-id: Go build id, else the first page",
          "[elf_core][modules]") {
  const std::string go_id = "Rz4LYFYg_sAF7NHQ-jPE/Y_wbkeDvhc8Sq3cl9w6w/0bpm0w7tq828e74SPhDj/xT";
  Bytes go_desc(go_id.size());
  std::memcpy(go_desc.data(), go_id.data(), go_id.size());
  const std::vector<common::ElfImage::Segment> loads = {{0x400000, 0, 0x60687, 5},
                                                        {0x461000, 0x61000, 0x70f20, 4}};
  const Bytes go_page = image_with(loads, note("Go", 4, go_desc));
  const common::ElfImage img = common::read_elf_image(go_page);
  CHECK(img.elf);
  CHECK(img.go_build_id == go_id);
  CHECK(img.gnu_build_id.empty());
  REQUIRE(img.loads.size() == 2);
  CHECK(img.loads[1].offset == 0x61000);
  // Not printable, or not the Go owner: no Go build id.
  CHECK_FALSE(common::go_build_id_in_notes(note("Go", 4, Bytes(8))));
  CHECK_FALSE(common::go_build_id_in_notes(note("GNU", 4, go_desc)));
  CHECK_FALSE(common::read_elf_image(Bytes(16)).elf);

  for (const bool go : {true, false}) {
    const Bytes page = go ? go_page : image_with(loads, {});
    CoreBuilder c;
    const uint64_t pc = 0x401234;
    append(c.notes, note("CORE", common::elf::k_nt_prstatus,
                         prstatus(common::elf::k_em_x86_64, 9, pc, k_stack + 0x100)));
    append(c.notes, note("CORE", common::elf::k_nt_file,
                         nt_file({{0x400000, 0x461000, 0, "/tmp/crashgo"},
                                  {0x461000, 0x4d2000, 0x61, "/tmp/crashgo"}})));
    c.loads = {{0x400000, 0x61000, 5, page}, {0x461000, 0x71000, 4, {}}};
    const CoreFacts f = scan(c.build());
    REQUIRE(f.modules.size() == 1);
    const auto& g = f.modules[0];
    CHECK(g.loaded);
    CHECK(g.build_id.empty());
    CHECK(g.go_build_id == (go ? go_id : ""));
    CHECK(g.match() == (go ? common::ModuleMatch::go_build_id : common::ModuleMatch::elf_headers));
    CHECK(g.page_bytes == 4096);
    CHECK(g.page_digest.size() == 64);
    CHECK(common::module_at(f, pc) == &g);
    CHECK_FALSE(f.build_id);
    CHECK(common::mappings_to_json(f)[0]["match"] == (go ? "go-build-id" : "elf-headers"));
  }
}

TEST_CASE("anonymous executable segments are JIT code, the vDSO and mapped files are not",
          "[elf_core]") {
  constexpr uint64_t k_jit = 0x3a0000000000;
  constexpr uint64_t k_vdso = 0x7fff00000000;
  CoreBuilder c = typical(common::elf::k_em_x86_64, k_vdso);
  // Sorted by address, as the kernel writes them: two adjacent JIT segments are one range.
  c.loads.insert(c.loads.begin(), {{k_jit, 0x1000, 5, {}},
                                   {k_jit + 0x1000, 0x3000, 7, {}},
                                   {k_jit + 0x8000, 0x1000, 6, {}}}); // data, not code
  c.loads.push_back({k_vdso, 0x2000, 5, {}});
  const Bytes core = c.build();
  const CoreFacts f = scan(core);
  REQUIRE(f.at_sysinfo_ehdr);
  REQUIRE(f.anonymous_code.size() == 1);
  CHECK(f.anonymous_code[0] == common::AddressRange{k_jit, k_jit + 0x4000});
  CHECK(common::anonymous_code_at(f, k_jit));
  CHECK(common::anonymous_code_at(f, k_jit + 0x3fff));
  CHECK_FALSE(common::anonymous_code_at(f, k_jit + 0x4000));
  CHECK_FALSE(common::anonymous_code_at(f, k_exe + 0x1100)); // the executable's text
  CHECK_FALSE(common::anonymous_code_at(f, k_vdso + 0x10));
  CHECK_FALSE(common::anonymous_code_at(f, 0));
}
