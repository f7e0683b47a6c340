#include "common/base/hex.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/unwind.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <elf.h>

#include <array>
#include <chrono>
#include <cstring>

using common::CoreFacts;
using common::FrameTrust;
using common::ThreadState;

namespace {

// An x86_64 thread with rip, rsp and rbp set and a stack window at rsp.
ThreadState thread(int64_t tid, uint64_t rip, uint64_t rsp, uint64_t rbp,
                   std::vector<uint64_t> stack_words) {
  ThreadState t;
  t.tid = tid;
  t.gregs.assign(27, 0);
  t.gregs[16] = rip;
  t.gregs[19] = rsp;
  t.gregs[4] = rbp;
  t.pc = rip;
  t.sp = rsp;
  t.stack_base = rsp;
  t.stack.resize(stack_words.size() * 8);
  std::memcpy(t.stack.data(), stack_words.data(), t.stack.size());
  return t;
}

CoreFacts facts_with(std::vector<ThreadState> threads) {
  CoreFacts f;
  f.is_elf = true;
  f.machine = "x86_64";
  f.thread_states = std::move(threads);
  return f;
}

} // namespace

TEST_CASE("without verified modules a thread keeps its context frame and says why", "[unwind]") {
  constexpr uint64_t k_sp = 0x7ffd00000000;
  // A frame-pointer chain pointing at itself and return addresses into nothing: no module to
  // validate a call site, so neither the chain nor the scan may invent frames.
  const CoreFacts f = facts_with({thread(7, 0x401136, k_sp, k_sp, {k_sp, 0x401200, k_sp, 0x401300}),
                                  thread(8, 0x401000, k_sp + 0x100000, 0, {})});
  const auto traces = common::unwind_threads(f, {});
  REQUIRE(traces.size() == 2);
  CHECK(traces[0].crashing);
  CHECK_FALSE(traces[1].crashing);
  CHECK(traces[0].tid == 7);
  REQUIRE(traces[0].frames.size() == 1);
  CHECK(traces[0].frames[0].pc == 0x401136);
  CHECK(traces[0].frames[0].trust == FrameTrust::context);
  CHECK_FALSE(traces[0].frames[0].symbol);
  // libdwfl's own frame-pointer step found 0x401200, which no call instruction precedes.
  CHECK(traces[0].error == "frame pointer leads to 0x401200, not after a call");
  CHECK(traces[1].error == "no module with a verified file at 0x401000");
}

TEST_CASE("threads are capped and a passed deadline leaves frame #0 only", "[unwind]") {
  std::vector<ThreadState> threads;
  for (int i = 0; i < 80; ++i) {
    threads.push_back(thread(100 + i, 0x1000 + static_cast<uint64_t>(i), 0x7ffd00000000, 0, {}));
  }
  const CoreFacts f = facts_with(std::move(threads));
  common::UnwindOptions options;
  options.max_threads = 64;
  options.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  const auto traces = common::unwind_threads(f, options);
  REQUIRE(traces.size() == 64);
  for (size_t i = 0; i < traces.size(); ++i) {
    REQUIRE(traces[i].frames.size() == 1);
    CHECK(traces[i].frames[0].pc == 0x1000 + i);
  }
}

TEST_CASE("registers that do not fit the machine give no frames beyond the pc", "[unwind]") {
  ThreadState t = thread(9, 0x1234, 0x7ffd00000000, 0, {0x1, 0x2});
  t.gregs.resize(5); // a short NT_PRSTATUS
  const auto traces = common::unwind_threads(facts_with({t}), {});
  REQUIRE(traces.size() == 1);
  REQUIRE(traces[0].frames.size() == 1);
  CHECK(traces[0].frames[0].pc == 0x1234);
}

TEST_CASE("frame trust names", "[unwind]") {
  for (auto t :
       {FrameTrust::context, FrameTrust::cfi, FrameTrust::frame_pointer, FrameTrust::scan}) {
    CHECK(common::frame_trust_from_string(common::to_string(t)) == t);
  }
  CHECK(common::to_string(FrameTrust::frame_pointer) == "frame_pointer");
  CHECK_FALSE(common::frame_trust_from_string("guess"));
}

namespace {

template <typename T>
void put_at(std::string& s, size_t at, const T& v) {
  std::memcpy(s.data() + at, &v, sizeof v);
}

// The ELF header of a little-endian 64-bit aarch64 file of `type` with `phnum` program headers
// right after it.
Elf64_Ehdr aarch64_header(Elf64_Half type, Elf64_Half phnum) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = type;
  eh.e_machine = EM_AARCH64;
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = phnum;
  return eh;
}

// An aarch64 core as the kernel writes it: one thread's NT_PRSTATUS (struct user_pt_regs:
// x0..x30, sp, pc, pstate) and one PT_LOAD holding the page its stack pointer points into.
std::string aarch64_core(const std::array<uint64_t, 34>& regs, uint64_t stack_base,
                         const std::string& stack) {
  constexpr size_t k_notes = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  constexpr size_t k_desc = 392; // struct elf_prstatus on aarch64
  constexpr size_t k_data = 0x1000;
  std::string core(k_data + stack.size(), '\0');
  put_at(core, 0, aarch64_header(ET_CORE, 2));
  Elf64_Nhdr nh{5, k_desc, NT_PRSTATUS};
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = k_notes;
  note.p_filesz = sizeof nh + 8 + k_desc;
  put_at(core, sizeof(Elf64_Ehdr), note);
  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_flags = PF_R | PF_W;
  load.p_offset = k_data;
  load.p_vaddr = stack_base;
  load.p_filesz = load.p_memsz = stack.size();
  put_at(core, sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr), load);
  put_at(core, k_notes, nh);
  std::memcpy(core.data() + k_notes + sizeof nh, "CORE", 5);
  const size_t desc = k_notes + sizeof nh + 8;
  put_at(core, desc + 32, int32_t{4242}); // pr_pid
  put_at(core, desc + 112, regs);         // pr_reg
  std::memcpy(core.data() + k_data, stack.data(), stack.size());
  return core;
}

// An aarch64 shared object with a GNU build-id and, at `calls`, `bl` instructions: the return
// addresses after them are what a frame-pointer step may accept.
std::string aarch64_module(const std::string& build_id, const std::vector<uint64_t>& calls) {
  std::string f(0x1000, '\0');
  put_at(f, 0, aarch64_header(ET_DYN, 2));
  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_flags = PF_R | PF_X;
  load.p_filesz = load.p_memsz = f.size();
  load.p_align = 0x1000;
  put_at(f, sizeof(Elf64_Ehdr), load);
  const Elf64_Nhdr nh{4, static_cast<Elf64_Word>(build_id.size()), NT_GNU_BUILD_ID};
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_flags = PF_R;
  note.p_offset = note.p_vaddr = 0x100;
  note.p_filesz = note.p_memsz = sizeof nh + 4 + build_id.size();
  note.p_align = 4;
  put_at(f, sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr), note);
  put_at(f, 0x100, nh);
  std::memcpy(f.data() + 0x100 + sizeof nh, "GNU", 4);
  std::memcpy(f.data() + 0x100 + sizeof nh + 4, build_id.data(), build_id.size());
  for (const uint64_t at : calls) {
    put_at(f, at, uint32_t{0x94000000}); // bl .
  }
  return f;
}

} // namespace

TEST_CASE("aarch64: NT_PRSTATUS registers reach the unwinder in DWARF numbering", "[unwind]") {
  test::TempDir dir;
  const std::string id(20, '\x5a');
  const auto module = dir.path() / "libaarch64.so";
  test::spit(module, aarch64_module(id, {0x200, 0x300}));
  constexpr uint64_t k_base = 0x400000; // where the module is mapped
  constexpr uint64_t k_stack = 0x7ffff000;
  constexpr uint64_t k_fp0 = k_stack + 0x100;
  constexpr uint64_t k_fp1 = k_stack + 0x200;
  // Two frame records {caller's fp, return address}: x29 -> {fp1, ret2} -> {0, 0}.
  std::string stack(0x1000, '\0');
  put_at(stack, k_fp0 - k_stack, std::array<uint64_t, 2>{k_fp1, k_base + 0x304});
  std::array<uint64_t, 34> regs{};
  for (size_t i = 0; i < 29; ++i) {
    regs[i] = 0x1000 + i; // x0..x28: nothing the walk may use
  }
  regs[29] = k_fp0;          // x29, the frame pointer
  regs[30] = k_base + 0x204; // x30, the link register: the caller of the leaf at pc
  regs[31] = k_stack;        // sp
  regs[32] = k_base + 0x400; // pc
  regs[33] = 0x60000000;     // pstate
  const std::string core = aarch64_core(regs, k_stack, stack);

  common::CoreScanner scanner;
  scanner.observe(std::as_bytes(std::span(core)));
  scanner.finish();
  CoreFacts f = scanner.facts();
  REQUIRE(f.machine == "aarch64");
  REQUIRE(f.thread_states.size() == 1);
  CHECK(f.thread_states[0].gregs.size() == 34);
  CHECK(f.pc == k_base + 0x400);
  CHECK(f.sp == k_stack);
  CHECK(f.lr == k_base + 0x204);
  // The mapped module, as NT_FILE and its first page would have named it.
  f.files.push_back({k_base, k_base + 0x1000, 0, module.string()});
  f.build_ids[module.string()] = common::hex_bytes(std::as_bytes(std::span(id.data(), id.size())));
  common::group_modules(f, [](const common::FileMapping&) { return true; });

  const auto traces = common::unwind_threads(f, {});
  REQUIRE(traces.size() == 1);
  CHECK(traces[0].tid == 4242);
  const auto& frames = traces[0].frames;
  // pc (register_pc), then x30 (DWARF 30), then the return address of x29's (DWARF 29) record;
  // each stack pointer above the last (sp is DWARF 31).
  REQUIRE(frames.size() == 3);
  CHECK(frames[0].pc == k_base + 0x400);
  CHECK(frames[0].trust == FrameTrust::context);
  CHECK(frames[1].pc == k_base + 0x204);
  CHECK(frames[1].trust == FrameTrust::frame_pointer);
  CHECK(frames[2].pc == k_base + 0x304);
  CHECK(frames[2].trust == FrameTrust::frame_pointer);
  for (const auto& fr : frames) {
    CHECK(fr.module == module.string());
    CHECK(fr.build_id == f.build_ids[module.string()]);
  }
}
