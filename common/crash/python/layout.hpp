// Where CPython keeps what the stack walker reads: the offsets of the runtime, interpreter,
// thread, frame, code and string structures, per minor version. 3.11 and 3.12 come from
// tables for x86_64, checked against the interpreters' headers by a test (aarch64 is not
// checked: the GIL's pthread mutex differs in size there, so no table is claimed for it); 3.13+
// publish them in `_Py_DebugOffsets` at the start of `_PyRuntime`.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace crash::python {

// Offsets in bytes; 0 for a field a version does not have (see the comments).
struct Layout {
  unsigned minor = 0; // 3.<minor>

  uint64_t runtime_interpreters_head = 0;
  uint64_t runtime_finalizing = 0;
  uint64_t runtime_gil_locked = 0; // 3.11: the GIL lives in _PyRuntime.ceval
  uint64_t runtime_gil_holder = 0;
  uint64_t interp_ceval_gil = 0; // 3.12+: a pointer to the interpreter's GIL
  uint64_t gil_locked = 0;
  uint64_t gil_holder = 0;
  uint64_t interp_id = 0;
  uint64_t interp_next = 0;
  uint64_t interp_threads_head = 0;
  uint64_t tstate_next = 0;
  uint64_t tstate_interp = 0;
  uint64_t tstate_cframe = 0;        // 3.11, 3.12: tstate->cframe->current_frame
  uint64_t tstate_current_frame = 0; // 3.13+: tstate->current_frame
  uint64_t tstate_thread_id = 0;
  uint64_t tstate_native_thread_id = 0;
  uint64_t cframe_current_frame = 0;
  uint64_t frame_previous = 0;
  uint64_t frame_code = 0;
  uint64_t frame_instr = 0; // prev_instr (3.11, 3.12) or instr_ptr (3.13+)
  uint64_t frame_owner = 0;
  uint64_t frame_is_entry = 0; // 3.11 only; later versions push a C-stack shim frame
  uint64_t code_filename = 0;
  uint64_t code_name = 0;
  uint64_t code_qualname = 0;
  uint64_t code_linetable = 0;
  uint64_t code_firstlineno = 0;
  uint64_t code_code_adaptive = 0;
  uint64_t object_type = 0;
  uint64_t bytes_size = 0;
  uint64_t bytes_sval = 0;
  uint64_t unicode_length = 0;
  uint64_t unicode_state = 0;
  uint64_t unicode_ascii_size = 0;
  uint64_t unicode_compact_size = 0;
};

// A frame's `owner` when it is the shim an entry into the evaluation loop pushes (3.12+).
inline constexpr uint8_t k_frame_owned_by_cstack = 3;

// The table for 3.<minor> (11 or 12), nullopt for any other.
std::optional<Layout> table_layout(unsigned minor);

// Size in bytes of the `_Py_DebugOffsets` prefix this walker reads (3.13's).
inline constexpr size_t k_debug_offsets_size = 8 * 71;

// The layout from `_Py_DebugOffsets` bytes (the start of `_PyRuntime`, 3.13+): checks the
// cookie "xdebugpy", the version against `minor`, every size field against the offsets used
// from that structure; a message on what did not hold otherwise.
std::optional<Layout> debug_offsets_layout(std::span<const std::byte> bytes, unsigned minor,
                                           std::string& why);

// The layout as "name value" lines, the names of tests/tools/python_offsets.c.
std::string describe(const Layout& layout);

} // namespace crash::python
