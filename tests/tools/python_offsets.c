/* Prints the CPython structure offsets the Python stack walker's tables hold, computed with
 * offsetof from the interpreter's own internal headers: one "name value" line each, in the
 * order and with the names of `pc_python_layout` (tests/tools/python_layout.cpp). Built
 * against libpython3.11-dev (and any other headers found) to check the tables. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_code.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#define P(name, value) printf("%s %zu\n", name, (size_t)(value))

int main(void) {
  P("version", PY_MINOR_VERSION);
  P("runtime.interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
  P("runtime.finalizing", offsetof(_PyRuntimeState, _finalizing));
#if PY_MINOR_VERSION == 11
  P("runtime.gil_locked", offsetof(_PyRuntimeState, ceval.gil.locked));
  P("runtime.gil_holder", offsetof(_PyRuntimeState, ceval.gil.last_holder));
  P("interp.ceval_gil", 0);
#else
  P("runtime.gil_locked", 0);
  P("runtime.gil_holder", 0);
  P("interp.ceval_gil", offsetof(PyInterpreterState, ceval.gil));
#endif
  P("gil.locked", offsetof(struct _gil_runtime_state, locked));
  P("gil.holder", offsetof(struct _gil_runtime_state, last_holder));
  P("interp.id", offsetof(PyInterpreterState, id));
  P("interp.next", offsetof(PyInterpreterState, next));
  P("interp.threads_head", offsetof(PyInterpreterState, threads.head));
  P("tstate.next", offsetof(PyThreadState, next));
  P("tstate.interp", offsetof(PyThreadState, interp));
  P("tstate.cframe", offsetof(PyThreadState, cframe));
  P("tstate.thread_id", offsetof(PyThreadState, thread_id));
  P("tstate.native_thread_id", offsetof(PyThreadState, native_thread_id));
  P("cframe.current_frame", offsetof(_PyCFrame, current_frame));
  P("frame.previous", offsetof(_PyInterpreterFrame, previous));
  P("frame.code", offsetof(_PyInterpreterFrame, f_code));
  P("frame.instr", offsetof(_PyInterpreterFrame, prev_instr));
  P("frame.owner", offsetof(_PyInterpreterFrame, owner));
#if PY_MINOR_VERSION == 11
  P("frame.is_entry", offsetof(_PyInterpreterFrame, is_entry));
#else
  P("frame.is_entry", 0);
#endif
  P("code.filename", offsetof(PyCodeObject, co_filename));
  P("code.name", offsetof(PyCodeObject, co_name));
  P("code.qualname", offsetof(PyCodeObject, co_qualname));
  P("code.linetable", offsetof(PyCodeObject, co_linetable));
  P("code.firstlineno", offsetof(PyCodeObject, co_firstlineno));
  P("code.code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
  P("object.type", offsetof(PyObject, ob_type));
  P("bytes.size", offsetof(PyVarObject, ob_size));
  P("bytes.sval", offsetof(PyBytesObject, ob_sval));
  P("unicode.length", offsetof(PyASCIIObject, length));
  P("unicode.state", offsetof(PyASCIIObject, hash) + sizeof(Py_hash_t));
  P("unicode.ascii_size", sizeof(PyASCIIObject));
  P("unicode.compact_size", sizeof(PyCompactUnicodeObject));
  return 0;
}
