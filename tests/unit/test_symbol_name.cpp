#include "common/crash/symbol_name.hpp"

#include <catch2/catch.hpp>

#include <string>

using common::demangle;
using common::elf_symbol_name;

TEST_CASE("demangle turns C++ names into what a debugger shows", "[symbol_name]") {
  CHECK(demangle("_ZN3foo3barEv") == "foo::bar()");
  CHECK(demangle("main") == "main");
  CHECK(demangle("") == "");
  // Not a valid mangling: kept as it is.
  CHECK(demangle("_Znotmangled!") == "_Znotmangled!");
  // A view that is not NUL-terminated where it ends.
  const std::string text = "_ZN3foo3barEvTRAILING";
  CHECK(demangle(std::string_view(text).substr(0, 13)) == "foo::bar()");
}

TEST_CASE("demangle keeps over-long names mangled and bounds what it returns", "[symbol_name]") {
  // A valid mangling just over the bound: a nested name of many one-letter parts.
  std::string mangled = "_ZN";
  while (mangled.size() <= common::k_max_demangle) {
    mangled += "1a";
  }
  mangled += "Ev";
  CHECK(demangle(mangled) == mangled);
  const std::string shorter = "_ZN" + std::string("1a1a1a") + "Ev";
  CHECK(demangle(shorter) == "a::a::a()");
  // A name that is not C++ is cut at the bound of a symbol name.
  const std::string huge(common::k_max_symbol_name + 100, 'x');
  CHECK(demangle(huge).size() == common::k_max_symbol_name);
  // A mangling at the bound whose demangled form is longer still stays within it.
  std::string deep = "_ZN";
  while (deep.size() + 8 < common::k_max_demangle) {
    deep += "5abcde";
  }
  deep += "Ev";
  CHECK(demangle(deep).size() <= common::k_max_symbol_name);
}

TEST_CASE("elf_symbol_name drops the ELF symbol version", "[symbol_name]") {
  CHECK(elf_symbol_name(nullptr).empty());
  CHECK(elf_symbol_name("__libc_start_main@@GLIBC_2.34") == "__libc_start_main");
  CHECK(elf_symbol_name("memcpy@GLIBC_2.2.5") == "memcpy");
  CHECK(elf_symbol_name("_ZN3foo3barEv@@V1") == "foo::bar()");
  // A leading '@' is all the name there is: kept.
  CHECK(elf_symbol_name("@odd") == "@odd");
  const std::string huge(common::k_max_symbol_name * 2, 'y');
  CHECK(elf_symbol_name(huge.c_str()).size() == common::k_max_symbol_name);
}
