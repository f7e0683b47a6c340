// The Python stacks of a crashed interpreter, as the record's `python` section holds them.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace crash::python {

// One Python frame: what faulthandler prints for it, and whether an entry into
// _PyEval_EvalFrameDefault began there (the native frame it merges with).
struct PyFrame {
  std::string function; // co_qualname
  std::string file;     // co_filename
  int64_t line = -1;    // from co_linetable; -1 when the instruction has no line
  bool entry = false;
};

// One thread state: innermost frame first.
struct PyThread {
  uint64_t native_thread_id = 0; // the kernel's tid, as in NT_PRSTATUS
  uint64_t thread_id = 0;        // pthread_self() of the thread
  uint64_t interpreter_id = 0;
  bool holds_gil = false;
  bool truncated = false; // the frame limit or a budget cut the stack
  std::vector<PyFrame> frames;
};

// The outcome of one walk.
enum class PyStatus {
  ok,          // every thread read
  partial,     // some read failed or a budget ran out: what was read is kept
  unsupported, // an interpreter this walker has no layout for (recorded as such, not guessed)
  invalid,     // the interpreter's structures do not hold together
  failed,      // the walk did not finish: its sandboxed child timed out or was killed
};

struct PythonStacks {
  PyStatus status = PyStatus::invalid;
  std::string version; // "3.11.2" from Py_Version, empty when unknown
  std::string module;  // path of the file holding _PyRuntime
  std::string detail;  // why the status is not ok
  std::string cut;     // what was cut to fit the record's share ("frames: 40 of 6400 kept")
  // Where the stacks were read: "" (the live process, at capture time), "core" (afterwards,
  // from the core's segments and the interpreter's file: corectl, for a record without them).
  std::string source;
  bool finalizing = false;
  std::vector<PyThread> threads;
  uint64_t reads = 0;
  uint64_t bytes = 0;
  uint64_t elapsed_us = 0;
};

const char* status_name(PyStatus status);

// The record's `python` section, and back (a missing or wrongly typed field is left default).
nlohmann::json to_json(const PythonStacks& stacks);
PythonStacks python_stacks_from_json(const nlohmann::json& j);

// faulthandler's rendering of the stacks ("Thread 0x… (most recent call first):" and
//   File "f", line N in name), the crashing thread (`crashed_tid`) marked "Current thread".
std::string render_traceback(const PythonStacks& stacks, uint64_t crashed_tid);

} // namespace crash::python
