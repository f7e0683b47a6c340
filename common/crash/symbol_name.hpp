// Symbol names as the crash's readers show them: C++ names demangled, ELF symbol versions
// dropped, every length bounded. One set of bounds for the handler's symbols, its unwinder and
// corectl's debuginfod lookups, so the same symbol reads the same everywhere.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace common {

// Mangled names longer than this are shown mangled: real ones are far shorter, and the demangler
// costs time and memory with the length of hostile ones.
constexpr size_t k_max_demangle = 1024;
// The longest symbol name kept, mangled or demangled; longer ones are cut.
constexpr size_t k_max_symbol_name = 4096;

// `name` demangled when it is a C++ name ("_Z…") of at most k_max_demangle bytes, else `name`
// unchanged; either way at most k_max_symbol_name bytes.
std::string demangle(std::string_view name);

// A NUL-terminated name from libelf or libdw (nullptr gives ""), read up to k_max_symbol_name
// bytes, demangled, without its ELF symbol version ("__libc_start_main@@GLIBC_2.34").
std::string elf_symbol_name(const char* name);

} // namespace common
