#include "common/crash/symbol_name.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>

namespace common {

std::string demangle(std::string_view name) {
  if (!name.starts_with("_Z") || name.size() > k_max_demangle) {
    return std::string(name.substr(0, k_max_symbol_name));
  }
  // __cxa_demangle wants a NUL-terminated string; the view may not be one.
  const std::string mangled(name);
  int status = 0;
  char* out = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  std::string result =
      status == 0 && out != nullptr ? std::string(out, strnlen(out, k_max_symbol_name)) : mangled;
  std::free(out); // NOLINT(cppcoreguidelines-no-malloc): __cxa_demangle allocates with malloc
  return result;
}

std::string elf_symbol_name(const char* name) {
  if (name == nullptr) {
    return {};
  }
  std::string_view s(name, strnlen(name, k_max_symbol_name));
  // The version first: "_ZN3foo3barEv@@V1" is no mangling the demangler knows.
  if (const size_t at = s.find('@'); at != std::string_view::npos && at > 0) {
    s = s.substr(0, at);
  }
  return demangle(s);
}

} // namespace common
