// CPython 3.11+'s co_linetable (Objects/locations.md): which source line an instruction is on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace crash::python {

// The line of the instruction at byte offset `offset` into the code (negative: before the
// first instruction, the line of the definition), starting from `firstlineno`; -1 when the
// table says the instruction has no line or does not reach it. Never reads past `table`.
int64_t line_for_offset(std::span<const std::byte> table, int64_t firstlineno, int64_t offset);

} // namespace crash::python
