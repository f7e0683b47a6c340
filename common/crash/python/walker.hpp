// Walks CPython's runtime in a crashed process's memory: every interpreter, thread state and
// frame, with the qualified function name, file and line of each. All memory is hostile: every
// pointer is checked against the reader's mappings, objects against the interpreter's own type
// objects, cycles end the walk and the reader's budget bounds its cost.
#pragma once

#include "common/base/error.hpp"
#include "common/crash/python/memory.hpp"
#include "common/crash/python/stacks.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace crash::python {

// Where the interpreter's symbols are in the file holding them (st_value, before the bias).
struct PythonSymbols {
  bool pie = false;              // ET_DYN: the load bias applies
  uint64_t first_load_vaddr = 0; // lowest PT_LOAD p_vaddr, page-aligned down
  uint64_t runtime = 0;          // _PyRuntime (or the .PyRuntime section)
  uint64_t version = 0;          // Py_Version (3.11+), 0 when absent
  uint64_t code_type = 0;        // PyCode_Type
  uint64_t unicode_type = 0;     // PyUnicode_Type
  uint64_t bytes_type = 0;       // PyBytes_Type
};

// Reads the ELF file `fd` (the python executable or libpython3.N.so): .dynsym (then .symtab)
// and the .PyRuntime section. Fails when it has no _PyRuntime: not a CPython 3 module.
common::Expected<PythonSymbols> read_python_symbols(int fd);

// Bounds on one walk beyond the reader's budget.
struct WalkLimits {
  unsigned max_interpreters = 16;
  unsigned max_threads = 1024;
  unsigned max_frames = 512; // per thread
  Budget budget;
};

// Walks the interpreter loaded at `bias` (0 for ET_EXEC; mapping start - first_load_vaddr for a
// PIE or a shared libpython). `module` names it in the result.
PythonStacks walk_python(MemoryReader& memory, const PythonSymbols& symbols, uint64_t bias,
                         const std::string& module, const WalkLimits& limits = {});

} // namespace crash::python
