#include "common/crash/signature.hpp"

#include "common/base/hex.hpp"
#include "common/base/sha256.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/perf_map.hpp"
#include "common/crash/runtime_frames.hpp"

#include <array>

namespace common {

namespace {

constexpr size_t k_signature_frames = 3;

// The function part of a symbol name: demangled C++ names keep their parameter list out, so an
// overload set of one function groups together whatever the compiler's spelling. A '(' right
// after a '.' is a Go method's receiver (`main.(*Cache).lookup`), part of the name.
std::string_view function_of(std::string_view name) {
  size_t paren = name.find('(');
  while (paren != std::string_view::npos && paren > 0 && name[paren - 1] == '.') {
    paren = name.find('(', paren + 1);
  }
  if (paren != std::string_view::npos && paren > 0) {
    name = name.substr(0, paren);
  }
  return name;
}

// A frame's identity for the signature: its function name, else its module's build-id (or file
// name) and offset — stable across ASLR, pids, hosts and container paths.
std::string frame_id(const Frame& f) {
  if (f.jit && f.symbol && !f.symbol->name.empty()) {
    return "jit:" + jit_signature_name(f.symbol->name);
  }
  if (f.symbol && !f.symbol->name.empty()) {
    return std::string(function_of(f.symbol->name));
  }
  if (f.module_offset) {
    const std::string module =
        !f.build_id.empty() ? "b:" + f.build_id : "n:" + module_basename(f.module);
    return module + "+" + hex_u64(*f.module_offset);
  }
  return "?";
}

// The C and C++ runtimes and the sanitizers: an unnamed frame there, among the crash machinery
// (libstdc++'s terminate handlers are local symbols, stripped from .dynsym), is machinery too.
bool is_runtime_library(std::string_view path) {
  const std::string base = module_basename(path);
  for (const std::string_view prefix :
       {"libc.so", "libstdc++.so", "libc++abi.so", "libc++.so", "libgcc_s.so", "libasan.so",
        "libubsan.so", "libtsan.so", "liblsan.so", "libpthread.so", "ld-linux"}) {
    if (base.starts_with(prefix)) {
      return true;
    }
  }
  return false;
}

// JIT code the perf map does not name: its address changes with every run, so it would only
// split one bug into many groups.
bool unnamed_jit(const Frame& f) {
  return f.jit && !(f.symbol && !f.symbol->name.empty());
}

bool skippable(const Frame& f) {
  if (unnamed_jit(f)) {
    return true;
  }
  if (f.signal_frame) {
    return false; // the crash happened in a signal handler: that is part of the bug
  }
  if (f.symbol && !f.symbol->name.empty()) {
    return is_crash_machinery(f.symbol->name) || is_runtime_crash_path(f.symbol->name, f.module);
  }
  return is_runtime_library(f.module);
}

} // namespace

// Names from glibc, libstdc++/libc++abi and the sanitizer runtimes that are on the stack because
// the program is crashing, not because of where it went wrong (the lists ABRT's and Socorro's
// skip lists hold, reduced to what Linux userspace shows).
bool is_crash_machinery(std::string_view function) {
  static constexpr std::array<std::string_view, 21> k_exact = {
      "raise",
      "abort",
      "__restore_rt",
      "__kernel_rt_sigreturn",
      "pthread_kill",
      "__pthread_kill",
      "gsignal",
      "__assert_fail",
      "__assert_perror_fail",
      "__assert_fail_base",
      "__stack_chk_fail",
      "__stack_chk_fail_local",
      "__fortify_fail",
      "__fortify_fail_abort",
      "__chk_fail",
      "__libc_message",
      "__libc_fatal",
      "__malloc_assert",
      "malloc_printerr",
      "std::terminate",
      "__cxa_throw",
  };
  static constexpr std::array<std::string_view, 13> k_prefixes = {
      "__pthread_kill_",
      "__GI_raise",
      "__GI_abort",
      "__GI___assert",
      "__GI___pthread_kill",
      "__libc_assert",
      "__cxxabiv1::",
      "__gnu_cxx::__verbose_terminate",
      "std::__terminate",
      "__sanitizer::",
      "__asan::",
      "__ubsan::",
      "__tsan::",
  };
  const std::string_view f = function_of(function);
  for (const auto e : k_exact) {
    if (f == e) {
      return true;
    }
  }
  for (const auto p : k_prefixes) {
    if (f.starts_with(p)) {
      return true;
    }
  }
  return f.starts_with("__asan_") || f.starts_with("__ubsan_") || f.starts_with("__tsan_") ||
         f.starts_with("__msan_") || f.starts_with("__lsan_") || f == "_Unwind_RaiseException" ||
         f == "__cxa_rethrow" || f == "__cxa_call_terminate" || f == "__cxa_call_unexpected";
}

std::optional<SignatureV2> signature_v2(int signo, std::span<const Frame> frames,
                                        std::string_view executable_path,
                                        std::string_view executable_id) {
  if (frames.empty()) {
    return std::nullopt;
  }
  size_t first = 0;
  while (first < frames.size() && skippable(frames[first])) {
    ++first;
  }
  if (first == frames.size()) {
    first = 0; // only machinery: keep it rather than hash nothing
  }
  SignatureV2 out;
  out.input = "v2|" + std::to_string(signo);
  bool in_executable = false;
  bool jit = false;
  size_t i = first;
  for (; i < frames.size() && out.chain.size() < k_signature_frames; ++i) {
    if (unnamed_jit(frames[i])) {
      continue;
    }
    const std::string id = frame_id(frames[i]);
    out.input += "|" + id;
    out.chain.push_back(id);
    in_executable =
        in_executable || (!executable_path.empty() && frames[i].module == executable_path);
    jit = jit || frames[i].jit;
  }
  // A JIT runtime's own frames (V8's builtins and runtime functions, an interpreter loop) are
  // the same for every script: the innermost named JIT frame below them says whose code it was.
  for (; i < frames.size() && !jit; ++i) {
    if (frames[i].jit && !unnamed_jit(frames[i])) {
      const std::string id = frame_id(frames[i]);
      out.input += "|" + id;
      out.chain.push_back(id);
      jit = true;
    }
  }
  if (!in_executable && !executable_id.empty()) {
    out.input += "|exe:" + std::string(executable_id);
  }
  out.signature = sha256_hex(out.input, 16);
  return out;
}

} // namespace common
