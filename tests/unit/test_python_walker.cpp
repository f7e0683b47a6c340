// The Python stack walker on synthetic memory: line tables, _Py_DebugOffsets checks, budgets,
// and a 3.12 interpreter image built from the walker's own table: cycles, wrong types and
// pointers outside the image, which no real interpreter on the test machine shows.
#include "common/crash/python/layout.hpp"
#include "common/crash/python/linetable.hpp"
#include "common/crash/python/memory.hpp"
#include "common/crash/python/merge.hpp"
#include "common/crash/python/walker.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

using namespace crash::python;

namespace {

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) {
    out.push_back(static_cast<std::byte>(b));
  }
  return out;
}

// A process image at `base` the test writes objects into.
struct Image {
  static constexpr uint64_t base = 0x400000;
  std::vector<std::byte> mem = std::vector<std::byte>(1 << 16);
  void u64(uint64_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      mem[at - base + static_cast<uint64_t>(i)] = static_cast<std::byte>(v >> (8 * i));
    }
  }
  void u32(uint64_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      mem[at - base + static_cast<uint64_t>(i)] = static_cast<std::byte>(v >> (8 * i));
    }
  }
  void u8(uint64_t at, uint8_t v) { mem[at - base] = static_cast<std::byte>(v); }
  void raw(uint64_t at, std::span<const std::byte> b) {
    std::memcpy(mem.data() + (at - base), b.data(), b.size());
  }
};

} // namespace

TEST_CASE("co_linetable entries give each instruction its line", "[python]") {
  // firstlineno 10: 2 units no column info (+1 line), 1 unit short form (same line),
  // 1 unit long form (-3 lines), 1 unit without location.
  const auto table = bytes({0x80 | (13 << 3) | 1, 2,          //
                            0x80 | (0 << 3) | 0, 0x01,        //
                            0x80 | (14 << 3) | 0, 7, 0, 1, 1, //
                            0x80 | (15 << 3) | 0});
  CHECK(line_for_offset(table, 10, -2) == 10);
  CHECK(line_for_offset(table, 10, 0) == 11);
  CHECK(line_for_offset(table, 10, 2) == 11);
  CHECK(line_for_offset(table, 10, 4) == 11);
  CHECK(line_for_offset(table, 10, 6) == 8);
  CHECK(line_for_offset(table, 10, 8) == -1);
  CHECK(line_for_offset(table, 10, 10) == -1); // past the table
  // A damaged table (a continuation byte where an entry starts) has no line, and a varint
  // cut by the table's end is read no further.
  CHECK(line_for_offset(bytes({0x01}), 1, 0) == -1);
  CHECK(line_for_offset(bytes({0x80 | (13 << 3), 0x7f}), 1, 0) == -1);
}

TEST_CASE("_Py_DebugOffsets is checked before it is used", "[python]") {
  std::vector<std::byte> d(k_debug_offsets_size);
  std::string why;
  CHECK_FALSE(debug_offsets_layout(d, 13, why));
  CHECK(why.find("cookie") != std::string::npos);
  std::memcpy(d.data(), "xdebugpy", 8);
  auto word = [&](size_t i, uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      d[i * 8 + static_cast<size_t>(b)] = static_cast<std::byte>(v >> (8 * b));
    }
  };
  word(1, 0x030c00f0);
  CHECK_FALSE(debug_offsets_layout(d, 13, why));
  CHECK(why.find("not 3.13") != std::string::npos);
  word(1, 0x030d00f0);
  // Every size 0: no offset can lie inside its structure.
  CHECK_FALSE(debug_offsets_layout(d, 13, why));
  CHECK(why.find("size") != std::string::npos);
  for (size_t size_word : {3u, 6u, 19u, 28u, 34u, 44u, 64u, 67u}) {
    word(size_word, 256);
  }
  word(70, 40); // asciiobject_size
  REQUIRE(debug_offsets_layout(d, 13, why));
  word(23, 4096); // thread_state.current_frame past thread_state.size
  CHECK_FALSE(debug_offsets_layout(d, 13, why));
  word(23, 64);
  word(2, 1); // free-threaded
  CHECK_FALSE(debug_offsets_layout(d, 13, why));
}

TEST_CASE("The memory reader keeps to mappings and budgets", "[python]") {
  std::vector<std::byte> mem(4 * 4096);
  ImageReader r(0x10000, mem);
  std::array<std::byte, 8> out{};
  CHECK(r.read(0x10000, out));
  CHECK_FALSE(r.read(0x13ffc, out)); // straddles the end
  CHECK(r.failure() == ReadFailure::unmapped);
  CHECK_FALSE(r.read(UINT64_MAX - 3, out)); // wraps around
  // Reads count page fetches: a second read of a cached page costs none.
  r.start(Budget{3, 1 << 20, std::chrono::milliseconds(1000)});
  CHECK(r.read(0x10000, out));
  CHECK(r.read(0x10008, out));
  CHECK(r.reads() == 1);
  CHECK(r.read(0x11000, out));
  CHECK(r.read(0x12000, out));
  CHECK_FALSE(r.read(0x13000, out));
  CHECK(r.failure() == ReadFailure::reads);
  CHECK(r.exhausted());
  CHECK_FALSE(r.read(0x10000, out)); // an exhausted walk reads nothing more
  r.start(Budget{100, 10, std::chrono::milliseconds(1000)});
  CHECK_FALSE(r.read(0x10000, out));
  CHECK(r.failure() == ReadFailure::bytes);
}

TEST_CASE("A 3.12 interpreter image walks to its frames, cycles and bad types end it", "[python]") {
  const Layout l = *table_layout(12);
  Image img;
  const uint64_t b = Image::base;
  const uint64_t version = b + 0x10, code_type = b + 0x100, str_type = b + 0x200,
                 bytes_type = b + 0x300, runtime = b + 0x1000, interp = b + 0x2000,
                 tstate = b + 0x3000, cframe = b + 0x3800, frame1 = b + 0x4000, frame2 = b + 0x4100,
                 shim = b + 0x4200, code = b + 0x5000, name = b + 0x6000, file = b + 0x6100,
                 table = b + 0x6200, gil = b + 0x7000;
  img.u32(version, 0x030c01f0);
  img.u64(runtime + l.runtime_interpreters_head, interp);
  img.u64(interp + l.interp_threads_head, tstate);
  img.u64(interp + l.interp_ceval_gil, gil);
  img.u32(gil + l.gil_locked, 1);
  img.u64(gil + l.gil_holder, tstate);
  img.u64(tstate + l.tstate_native_thread_id, 4242);
  img.u64(tstate + l.tstate_cframe, cframe);
  img.u64(cframe + l.cframe_current_frame, frame1);
  // frame1 -> frame2 -> shim (the entry) -> frame1: a cycle.
  for (uint64_t f : {frame1, frame2}) {
    img.u64(f + l.frame_code, code);
    img.u64(f + l.frame_instr, code + l.code_code_adaptive + 2);
  }
  img.u64(frame1 + l.frame_previous, frame2);
  img.u64(frame2 + l.frame_previous, shim);
  img.u8(shim + l.frame_owner, k_frame_owned_by_cstack);
  img.u64(shim + l.frame_previous, frame1);
  img.u64(code + l.object_type, code_type);
  img.u64(code + l.code_qualname, name);
  img.u64(code + l.code_filename, file);
  img.u64(code + l.code_linetable, table);
  img.u32(code + l.code_firstlineno, 7);
  auto str = [&](uint64_t at, std::string_view s) {
    img.u64(at + l.object_type, str_type);
    img.u64(at + l.unicode_length, s.size());
    img.u32(at + l.unicode_state, (1u << 2) | (1u << 5) | (1u << 6)); // compact ASCII
    img.raw(at + l.unicode_ascii_size, std::as_bytes(std::span(s)));
  };
  str(name, "Service.handle");
  str(file, "/srv/app.py");
  img.u64(table + l.object_type, bytes_type);
  img.u64(table + l.bytes_size, 2);
  img.raw(table + l.bytes_sval, bytes({0x80 | (13 << 3) | 3, 4})); // 4 units, line +2

  ImageReader reader(b, img.mem);
  PythonSymbols s{false, 0, 0x1000, 0x10, 0x100, 0x200, 0x300};
  PythonStacks out = walk_python(reader, s, b, "python3.12");
  CHECK(out.version == "3.12.1");
  REQUIRE(out.threads.size() == 1);
  const PyThread& t = out.threads[0];
  CHECK(t.native_thread_id == 4242);
  CHECK(t.holds_gil);
  CHECK(t.truncated); // the cycle
  CHECK(out.status == PyStatus::partial);
  REQUIRE(t.frames.size() == 2);
  CHECK(t.frames[0].function == "Service.handle");
  CHECK(t.frames[0].file == "/srv/app.py");
  CHECK(t.frames[0].line == 9);
  CHECK_FALSE(t.frames[0].entry);
  CHECK(t.frames[1].entry);

  SECTION("a code object of another type is not read") {
    img.u64(code + l.object_type, str_type);
    ImageReader r2(b, img.mem);
    const PythonStacks o2 = walk_python(r2, s, b, "python3.12");
    REQUIRE(o2.threads.size() == 1);
    CHECK(o2.threads[0].frames.empty());
  }
  SECTION("a pointer outside the mappings ends the thread's walk") {
    img.u64(frame2 + l.frame_previous, 0xdead0000);
    ImageReader r3(b, img.mem);
    const PythonStacks o3 = walk_python(r3, s, b, "python3.12");
    CHECK(o3.status == PyStatus::partial);
    CHECK(o3.threads.at(0).frames.size() == 2);
  }
  SECTION("a version without a layout is unsupported, never guessed") {
    img.u32(version, 0x030a00f0);
    ImageReader r4(b, img.mem);
    const PythonStacks o4 = walk_python(r4, s, b, "python3.10");
    CHECK(o4.status == PyStatus::unsupported);
    CHECK(o4.threads.empty());
  }
}

TEST_CASE("Python frames merge into the native trace at the evaluation-loop frames", "[python]") {
  auto native = [](const char* name) {
    common::Frame f;
    f.symbol = common::ResolvedSymbol{name, 0, true};
    return f;
  };
  const std::vector<common::Frame> trace = {
      native("PyOS_setsig"),   native("_PyEval_EvalFrameDefault"), native("_PyFunction_Vectorcall"),
      native("PyObject_Call"), native("_PyEval_EvalFrameDefault"), native("Py_RunMain")};
  PyThread t;
  t.native_thread_id = 17;
  t.frames = {{"parse_payload", "/srv/a.py", 5, false},
              {"handle_request", "/srv/a.py", 7, true},
              {"Thread.run", "/usr/lib/python3.11/threading.py", 975, false},
              {"<module>", "/srv/a.py", 20, true}};
  const auto merged = merge_python_frames(trace, t);
  std::vector<std::string> names;
  for (const MergedFrame& m : merged) {
    names.push_back(m.native ? m.native->symbol->name : "py:" + m.python->function);
  }
  CHECK(names == std::vector<std::string>{
                     "PyOS_setsig", "_PyEval_EvalFrameDefault", "py:parse_payload",
                     "py:handle_request", "_PyFunction_Vectorcall", "PyObject_Call",
                     "_PyEval_EvalFrameDefault", "py:Thread.run", "py:<module>", "Py_RunMain"});
  SECTION("runs left over when the native trace ended early come last") {
    const auto short_merge = merge_python_frames(std::span(trace).first(2), t);
    REQUIRE(short_merge.size() == 6);
    CHECK(short_merge.back().python->function == "<module>");
  }
  CHECK(signature_python_frame(t) == "/srv/a.py:parse_payload");
  PythonStacks s;
  s.threads = {t};
  CHECK(thread_for_tid(s, 17) == &s.threads[0]);
  CHECK(thread_for_tid(s, 18) == nullptr);
}

TEST_CASE("Signature v3 adds the Python caller of a native crash called from Python", "[python]") {
  auto native = [](const char* name) {
    common::Frame f;
    f.symbol = common::ResolvedSymbol{name, 0, true};
    return f;
  };
  const std::vector<common::Frame> from_python = {native("strlen"), native("PyCFuncPtr_call"),
                                                  native("_PyEval_EvalFrameDefault")};
  const std::vector<common::Frame> plain_c = {native("strlen"), native("main")};
  common::SignatureV2 v2;
  v2.input = "v2|11|strlen|PyCFuncPtr_call|_PyEval_EvalFrameDefault";
  v2.signature = "0123456789abcdef";
  v2.chain = {"strlen", "PyCFuncPtr_call", "_PyEval_EvalFrameDefault"};
  PythonStacks stacks;
  PyThread t;
  t.native_thread_id = 42;
  // ctypes' own wrapper is the standard library's: the caller outside it is named.
  t.frames = {{"string_at", "/usr/lib/python3.11/ctypes/__init__.py", 519, false},
              {"parse_payload", "/srv/app.py", 9, false},
              {"<module>", "/srv/app.py", 20, true}};
  stacks.threads = {t};
  const auto v3 = signature_v3(v2, from_python, stacks, 42);
  REQUIRE(v3);
  CHECK(v3->version == 3);
  CHECK(v3->input == "v3|11|strlen|PyCFuncPtr_call|_PyEval_EvalFrameDefault|py:/srv/app.py:"
                     "parse_payload");
  CHECK(v3->signature.size() == 16);
  CHECK(v3->signature != v2.signature);
  CHECK(v3->chain.back() == "/srv/app.py:parse_payload");
  SECTION("another caller, another signature") {
    stacks.threads[0].frames[1].function = "render_page";
    const auto other = signature_v3(v2, from_python, stacks, 42);
    REQUIRE(other);
    CHECK(other->signature != v3->signature);
  }
  SECTION("native frames not called from Python, or no thread state: v2 stands") {
    CHECK_FALSE(signature_v3(v2, plain_c, stacks, 42));
    CHECK_FALSE(signature_v3(v2, from_python, stacks, 43));
  }
  SECTION("a site-packages module is not the standard library") {
    stacks.threads[0].frames[0].file = "/usr/lib/python3/dist-packages/numpy/core/x.py";
    CHECK(signature_python_frame(stacks.threads[0]) ==
          "/usr/lib/python3/dist-packages/numpy/core/x.py:string_at");
  }
}
