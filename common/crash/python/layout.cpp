// CPython's structure layouts, per minor version.
#include "common/crash/python/layout.hpp"

#include "common/base/bytes.hpp"
#include "common/base/hex.hpp"

#include <cstring>
#include <string>

namespace crash::python {

namespace {

// From offsetof over Python 3.11's internal headers (Include/internal/pycore_*.h); the test
// python_offsets recomputes them from Debian's libpython3.11-dev and fails on any difference.
Layout layout_311() {
  Layout l;
  l.minor = 11;
  l.runtime_interpreters_head = 40;
  l.runtime_finalizing = 24;
  l.runtime_gil_locked = 376;
  l.runtime_gil_holder = 368;
  l.gil_locked = 16;
  l.gil_holder = 8;
  l.interp_id = 48;
  l.interp_next = 0;
  l.interp_threads_head = 16;
  l.tstate_next = 8;
  l.tstate_interp = 16;
  l.tstate_cframe = 56;
  l.tstate_thread_id = 152;
  l.tstate_native_thread_id = 160;
  l.cframe_current_frame = 8;
  l.frame_previous = 48;
  l.frame_code = 32;
  l.frame_instr = 56;
  l.frame_owner = 69;
  l.frame_is_entry = 68;
  l.code_filename = 112;
  l.code_name = 120;
  l.code_qualname = 128;
  l.code_linetable = 136;
  l.code_firstlineno = 72;
  l.code_code_adaptive = 184;
  l.object_type = 8;
  l.bytes_size = 16;
  l.bytes_sval = 32;
  l.unicode_length = 16;
  l.unicode_state = 32;
  l.unicode_ascii_size = 48; // 3.11 still has the wstr pointer
  l.unicode_compact_size = 72;
  return l;
}

// 3.12: the GIL moved into the interpreter (a pointer), _PyCFrame lost use_tracing, the code
// pointer leads the frame, and an entry into the loop pushes a shim frame instead of is_entry.
Layout layout_312() {
  Layout l = layout_311();
  l.minor = 12;
  l.runtime_gil_locked = 0;
  l.runtime_gil_holder = 0;
  l.interp_ceval_gil = 384;
  l.interp_id = 8;
  l.interp_threads_head = 72;
  l.tstate_thread_id = 136;
  l.tstate_native_thread_id = 144;
  l.cframe_current_frame = 0;
  l.frame_previous = 8;
  l.frame_code = 0;
  l.frame_owner = 70;
  l.frame_is_entry = 0;
  l.code_firstlineno = 68;
  l.code_code_adaptive = 192;
  l.unicode_ascii_size = 40;
  l.unicode_compact_size = 56;
  return l;
}

// Field indices (in 8-byte words) of 3.13's _Py_DebugOffsets (Include/internal/pycore_runtime.h).
enum Word : uint64_t {
  w_version = 1,
  w_free_threaded = 2,
  w_runtime_size = 3,
  w_runtime_finalizing,
  w_runtime_interpreters_head,
  w_interp_size,
  w_interp_id,
  w_interp_next,
  w_interp_threads_head,
  w_interp_ceval_gil = 14,
  w_interp_gil_runtime_state,
  w_interp_gil_enabled,
  w_interp_gil_locked,
  w_interp_gil_holder,
  w_tstate_size,
  w_tstate_prev,
  w_tstate_next,
  w_tstate_interp,
  w_tstate_current_frame,
  w_tstate_thread_id,
  w_tstate_native_thread_id,
  w_frame_size = 28,
  w_frame_previous,
  w_frame_executable,
  w_frame_instr_ptr,
  w_frame_localsplus,
  w_frame_owner,
  w_code_size,
  w_code_filename,
  w_code_name,
  w_code_qualname,
  w_code_linetable,
  w_code_firstlineno,
  w_code_code_adaptive = 43,
  w_object_size,
  w_object_type,
  w_bytes_size = 64,
  w_bytes_ob_size,
  w_bytes_sval,
  w_unicode_size,
  w_unicode_state,
  w_unicode_length,
  w_unicode_ascii_size,
};

// _PyRuntimeState and PyInterpreterState hold caches and free lists of a few hundred KiB; a
// stated size past this is not CPython's.
constexpr uint64_t k_max_struct_size = 16u << 20;

} // namespace

std::optional<Layout> table_layout(unsigned minor) {
  switch (minor) {
  case 11:
    return layout_311();
  case 12:
    return layout_312();
  default:
    return std::nullopt;
  }
}

std::optional<Layout> debug_offsets_layout(std::span<const std::byte> bytes, unsigned minor,
                                           std::string& why) {
  if (bytes.size() < k_debug_offsets_size) {
    why = "_Py_DebugOffsets is truncated";
    return std::nullopt;
  }
  if (std::memcmp(bytes.data(), "xdebugpy", 8) != 0) {
    why = "_Py_DebugOffsets has no 'xdebugpy' cookie";
    return std::nullopt;
  }
  auto w = [&](uint64_t i) { return common::read_le<uint64_t>(bytes, i * 8).value_or(0); };
  const uint64_t version = w(w_version);
  if (((version >> 24) & 0xff) != 3 || ((version >> 16) & 0xff) != minor) {
    why = "_Py_DebugOffsets version " + common::hex_u64(version) + " is not 3." +
          std::to_string(minor);
    return std::nullopt;
  }
  if (w(w_free_threaded) != 0) {
    why = "free-threaded builds are not supported";
    return std::nullopt;
  }
  // Every offset taken from a structure must leave room for its field inside the size the
  // interpreter states for that structure, and no size may be absurd.
  bool ok = true;
  auto field = [&](uint64_t size_word, uint64_t offset_word, uint64_t width) {
    const uint64_t size = w(size_word);
    const uint64_t offset = w(offset_word);
    if (size == 0 || size > k_max_struct_size || offset > size || size - offset < width) {
      ok = false;
    }
    return offset;
  };
  Layout l;
  l.minor = minor;
  l.runtime_finalizing = field(w_runtime_size, w_runtime_finalizing, 8);
  l.runtime_interpreters_head = field(w_runtime_size, w_runtime_interpreters_head, 8);
  l.interp_id = field(w_interp_size, w_interp_id, 8);
  l.interp_next = field(w_interp_size, w_interp_next, 8);
  l.interp_threads_head = field(w_interp_size, w_interp_threads_head, 8);
  l.interp_ceval_gil = field(w_interp_size, w_interp_ceval_gil, 8);
  const uint64_t gil = field(w_interp_size, w_interp_gil_runtime_state, 8);
  const uint64_t locked = field(w_interp_size, w_interp_gil_locked, 4);
  const uint64_t holder = field(w_interp_size, w_interp_gil_holder, 8);
  if (locked < gil || holder < gil) {
    ok = false;
  } else {
    // Stated relative to the interpreter's own GIL; ceval.gil may point at another's.
    l.gil_locked = locked - gil;
    l.gil_holder = holder - gil;
  }
  l.tstate_next = field(w_tstate_size, w_tstate_next, 8);
  l.tstate_interp = field(w_tstate_size, w_tstate_interp, 8);
  l.tstate_current_frame = field(w_tstate_size, w_tstate_current_frame, 8);
  l.tstate_thread_id = field(w_tstate_size, w_tstate_thread_id, 8);
  l.tstate_native_thread_id = field(w_tstate_size, w_tstate_native_thread_id, 8);
  l.frame_previous = field(w_frame_size, w_frame_previous, 8);
  l.frame_code = field(w_frame_size, w_frame_executable, 8);
  l.frame_instr = field(w_frame_size, w_frame_instr_ptr, 8);
  l.frame_owner = field(w_frame_size, w_frame_owner, 1);
  l.code_filename = field(w_code_size, w_code_filename, 8);
  l.code_name = field(w_code_size, w_code_name, 8);
  l.code_qualname = field(w_code_size, w_code_qualname, 8);
  l.code_linetable = field(w_code_size, w_code_linetable, 8);
  l.code_firstlineno = field(w_code_size, w_code_firstlineno, 4);
  // co_code_adaptive is the variable-length tail: it may sit at the structure's very end.
  l.code_code_adaptive = field(w_code_size, w_code_code_adaptive, 0);
  l.object_type = field(w_object_size, w_object_type, 8);
  l.bytes_size = field(w_bytes_size, w_bytes_ob_size, 8);
  l.bytes_sval = field(w_bytes_size, w_bytes_sval, 0);
  l.unicode_state = field(w_unicode_size, w_unicode_state, 4);
  l.unicode_length = field(w_unicode_size, w_unicode_length, 8);
  l.unicode_ascii_size = w(w_unicode_ascii_size);
  if (l.unicode_ascii_size == 0 || l.unicode_ascii_size > w(w_unicode_size)) {
    ok = false;
  }
  // PyCompactUnicodeObject adds utf8_length and utf8 to PyASCIIObject since 3.12.
  l.unicode_compact_size = l.unicode_ascii_size + 16;
  if (!ok) {
    why = "a _Py_DebugOffsets offset lies outside its structure's stated size";
    return std::nullopt;
  }
  return l;
}

std::string describe(const Layout& l) {
  std::string s;
  auto p = [&](const char* name, uint64_t v) {
    s += std::string(name) + " " + std::to_string(v) + "\n";
  };
  p("version", l.minor);
  p("runtime.interpreters_head", l.runtime_interpreters_head);
  p("runtime.finalizing", l.runtime_finalizing);
  p("runtime.gil_locked", l.runtime_gil_locked);
  p("runtime.gil_holder", l.runtime_gil_holder);
  p("interp.ceval_gil", l.interp_ceval_gil);
  p("gil.locked", l.gil_locked);
  p("gil.holder", l.gil_holder);
  p("interp.id", l.interp_id);
  p("interp.next", l.interp_next);
  p("interp.threads_head", l.interp_threads_head);
  p("tstate.next", l.tstate_next);
  p("tstate.interp", l.tstate_interp);
  p("tstate.cframe", l.tstate_cframe);
  p("tstate.thread_id", l.tstate_thread_id);
  p("tstate.native_thread_id", l.tstate_native_thread_id);
  p("cframe.current_frame", l.cframe_current_frame);
  p("frame.previous", l.frame_previous);
  p("frame.code", l.frame_code);
  p("frame.instr", l.frame_instr);
  p("frame.owner", l.frame_owner);
  p("frame.is_entry", l.frame_is_entry);
  p("code.filename", l.code_filename);
  p("code.name", l.code_name);
  p("code.qualname", l.code_qualname);
  p("code.linetable", l.code_linetable);
  p("code.firstlineno", l.code_firstlineno);
  p("code.code_adaptive", l.code_code_adaptive);
  p("object.type", l.object_type);
  p("bytes.size", l.bytes_size);
  p("bytes.sval", l.bytes_sval);
  p("unicode.length", l.unicode_length);
  p("unicode.state", l.unicode_state);
  p("unicode.ascii_size", l.unicode_ascii_size);
  p("unicode.compact_size", l.unicode_compact_size);
  return s;
}

} // namespace crash::python
