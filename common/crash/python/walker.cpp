// The CPython stack walker.
#include "common/crash/python/walker.hpp"

#include "common/crash/python/layout.hpp"
#include "common/crash/python/linetable.hpp"

#include <elf.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace crash::python {

namespace {

// ELF reads of the module file are bounded like any other input: a python module has a few
// thousand dynamic symbols, and .symtab is only looked at when .dynsym lacks _PyRuntime.
constexpr uint64_t k_max_section_headers = 4096;
constexpr uint64_t k_max_symtab_bytes = 64u << 20;
constexpr uint64_t k_max_strtab_bytes = 64u << 20;

bool pread_exact(int fd, void* out, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n =
        ::pread(fd, static_cast<char*>(out) + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// Scans one symbol table for the names the walker needs.
bool scan_symbols(int fd, const Elf64_Shdr& symtab, const Elf64_Shdr& strtab, PythonSymbols& out) {
  if (symtab.sh_size > k_max_symtab_bytes || strtab.sh_size > k_max_strtab_bytes ||
      symtab.sh_entsize != sizeof(Elf64_Sym)) {
    return false;
  }
  std::vector<Elf64_Sym> syms(symtab.sh_size / sizeof(Elf64_Sym));
  std::string strings(strtab.sh_size, '\0');
  if (!pread_exact(fd, syms.data(), syms.size() * sizeof(Elf64_Sym), symtab.sh_offset) ||
      !pread_exact(fd, strings.data(), strings.size(), strtab.sh_offset)) {
    return false;
  }
  for (const Elf64_Sym& s : syms) {
    if (s.st_name >= strings.size() || s.st_shndx == SHN_UNDEF || s.st_value == 0) {
      continue;
    }
    const char* name = strings.c_str() + s.st_name;
    const size_t len = strnlen(name, strings.size() - s.st_name);
    const std::string_view n(name, len);
    if (n == "_PyRuntime") {
      out.runtime = s.st_value;
    } else if (n == "Py_Version") {
      out.version = s.st_value;
    } else if (n == "PyCode_Type") {
      out.code_type = s.st_value;
    } else if (n == "PyUnicode_Type") {
      out.unicode_type = s.st_value;
    } else if (n == "PyBytes_Type") {
      out.bytes_type = s.st_value;
    }
  }
  return true;
}

} // namespace

common::Expected<PythonSymbols> read_python_symbols(int fd) {
  Elf64_Ehdr eh{};
  if (!pread_exact(fd, &eh, sizeof eh, 0) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
      eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_shnum > k_max_section_headers) {
    return common::fail("Not an ELF64 file with section headers");
  }
  PythonSymbols out;
  out.pie = eh.e_type == ET_DYN;
  out.first_load_vaddr = UINT64_MAX;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    if (!pread_exact(fd, &ph, sizeof ph, eh.e_phoff + uint64_t{i} * sizeof ph)) {
      return common::fail("Truncated program headers");
    }
    if (ph.p_type == PT_LOAD && ph.p_vaddr < out.first_load_vaddr) {
      out.first_load_vaddr = ph.p_vaddr & ~uint64_t{0xfff};
    }
  }
  if (out.first_load_vaddr == UINT64_MAX) {
    return common::fail("No PT_LOAD segment");
  }
  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  if (!pread_exact(fd, sh.data(), sh.size() * sizeof(Elf64_Shdr), eh.e_shoff)) {
    return common::fail("Truncated section headers");
  }
  std::string shstr;
  if (eh.e_shstrndx < sh.size() && sh[eh.e_shstrndx].sh_size <= k_max_strtab_bytes) {
    shstr.resize(sh[eh.e_shstrndx].sh_size);
    if (!pread_exact(fd, shstr.data(), shstr.size(), sh[eh.e_shstrndx].sh_offset)) {
      shstr.clear();
    }
  }
  for (uint32_t pass_type : {uint32_t{SHT_DYNSYM}, uint32_t{SHT_SYMTAB}}) {
    for (const Elf64_Shdr& s : sh) {
      if (s.sh_type == pass_type && s.sh_link < sh.size()) {
        scan_symbols(fd, s, sh[s.sh_link], out);
      }
    }
    if (out.runtime != 0 && out.code_type != 0) {
      break;
    }
  }
  // 3.12+ place _PyRuntime in a section of its own, for tools that find it without symbols.
  if (out.runtime == 0) {
    for (const Elf64_Shdr& s : sh) {
      if (s.sh_name < shstr.size() && std::strcmp(shstr.c_str() + s.sh_name, ".PyRuntime") == 0) {
        out.runtime = s.sh_addr;
      }
    }
  }
  if (out.runtime == 0) {
    return common::fail("No _PyRuntime symbol or .PyRuntime section");
  }
  return out;
}

namespace {

constexpr uint64_t k_max_string_chars = 1024;
constexpr uint64_t k_max_linetable_bytes = 1u << 16;

// Appends code point `c` as UTF-8; surrogates and values past U+10FFFF become U+FFFD.
void append_utf8(std::string& out, uint32_t c) {
  if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff) {
    c = 0xfffd;
  }
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

struct CodeInfo {
  bool valid = false;
  std::string function;
  std::string file;
  std::vector<std::byte> linetable;
  int64_t firstlineno = 0;
};

class Walk {
public:
  Walk(MemoryReader& memory, const PythonSymbols& symbols, uint64_t bias, const Layout& layout)
      : m_mem(memory), m_layout(layout), m_code_type(symbols.code_type + bias),
        m_unicode_type(symbols.unicode_type + bias), m_bytes_type(symbols.bytes_type + bias) {}

  bool is_type(uint64_t object, uint64_t type) {
    const auto t = m_mem.read_u64(object + m_layout.object_type);
    return t && *t == type;
  }

  // A str object as UTF-8; "<?>" when it is not one the walker can read.
  std::string read_str(uint64_t object) {
    if (object == 0 || !is_type(object, m_unicode_type)) {
      return "<?>";
    }
    const auto length = m_mem.read_u64(object + m_layout.unicode_length);
    const auto state = m_mem.read_u32(object + m_layout.unicode_state);
    if (!length || !state) {
      return "<?>";
    }
    const uint32_t kind = (*state >> 2) & 7;
    const bool compact = (*state >> 5) & 1;
    const bool ascii = (*state >> 6) & 1;
    if (!compact || (kind != 1 && kind != 2 && kind != 4) || (ascii && kind != 1)) {
      return "<?>";
    }
    const uint64_t chars = std::min(*length, k_max_string_chars);
    std::vector<std::byte> data(chars * kind);
    const uint64_t at =
        object + (ascii ? m_layout.unicode_ascii_size : m_layout.unicode_compact_size);
    if (!data.empty() && !m_mem.read(at, data)) {
      return "<?>";
    }
    std::string out;
    for (uint64_t i = 0; i < chars; ++i) {
      uint32_t c = 0;
      for (uint32_t b = 0; b < kind; ++b) {
        c |= static_cast<uint32_t>(data[i * kind + b]) << (8 * b);
      }
      append_utf8(out, c);
    }
    if (chars < *length) {
      out += "...";
    }
    return out;
  }

  const CodeInfo& code(uint64_t address) {
    auto [it, inserted] = m_codes.try_emplace(address);
    if (!inserted) {
      return it->second;
    }
    CodeInfo& info = it->second;
    if (!is_type(address, m_code_type)) {
      return info;
    }
    info.valid = true;
    info.function = read_str(m_mem.read_u64(address + m_layout.code_qualname).value_or(0));
    info.file = read_str(m_mem.read_u64(address + m_layout.code_filename).value_or(0));
    info.firstlineno =
        static_cast<int32_t>(m_mem.read_u32(address + m_layout.code_firstlineno).value_or(0));
    const uint64_t table = m_mem.read_u64(address + m_layout.code_linetable).value_or(0);
    if (table != 0 && is_type(table, m_bytes_type)) {
      const uint64_t size = m_mem.read_u64(table + m_layout.bytes_size).value_or(0);
      if (size > 0 && size <= k_max_linetable_bytes) {
        info.linetable.resize(size);
        if (!m_mem.read(table + m_layout.bytes_sval, info.linetable)) {
          info.linetable.clear();
        }
      }
    }
    return info;
  }

  // The frames of one thread state, innermost first.
  void frames(uint64_t frame, PyThread& thread, unsigned max_frames) {
    std::unordered_set<uint64_t> seen;
    while (frame != 0) {
      if (thread.frames.size() >= max_frames || !seen.insert(frame).second) {
        thread.truncated = true; // a cycle ends the walk like the limit does
        return;
      }
      std::array<std::byte, 1> owner{};
      if (!m_mem.read(frame + m_layout.frame_owner, owner)) {
        thread.truncated = true;
        return;
      }
      if (m_layout.minor >= 12 && static_cast<uint8_t>(owner[0]) == k_frame_owned_by_cstack) {
        // The shim below an entry into _PyEval_EvalFrameDefault: the frame above it is the entry.
        if (!thread.frames.empty()) {
          thread.frames.back().entry = true;
        }
      } else if (const auto code_ptr = m_mem.read_u64(frame + m_layout.frame_code)) {
        const CodeInfo& info = code(*code_ptr);
        if (info.valid) {
          PyFrame f;
          f.function = info.function;
          f.file = info.file;
          const uint64_t instr = m_mem.read_u64(frame + m_layout.frame_instr).value_or(0);
          const uint64_t code_start = *code_ptr + m_layout.code_code_adaptive;
          // 3.11/3.12 keep the previous instruction (code-1 before the first); 3.13 the current.
          const int64_t offset = static_cast<int64_t>(instr - code_start);
          f.line = line_for_offset(info.linetable, info.firstlineno, offset);
          if (m_layout.frame_is_entry != 0) {
            std::array<std::byte, 1> entry{};
            f.entry =
                m_mem.read(frame + m_layout.frame_is_entry, entry) && entry[0] != std::byte{0};
          }
          thread.frames.push_back(std::move(f));
        }
      } else {
        thread.truncated = true;
        return;
      }
      const auto previous = m_mem.read_u64(frame + m_layout.frame_previous);
      if (!previous) {
        thread.truncated = true;
        return;
      }
      frame = *previous;
    }
  }

  MemoryReader& m_mem;
  const Layout& m_layout;
  uint64_t m_code_type;
  uint64_t m_unicode_type;
  uint64_t m_bytes_type;
  std::unordered_map<uint64_t, CodeInfo> m_codes;
};

} // namespace

PythonStacks walk_python(MemoryReader& memory, const PythonSymbols& symbols, uint64_t bias,
                         const std::string& module, const WalkLimits& limits) {
  const auto started = std::chrono::steady_clock::now();
  memory.start(limits.budget);
  PythonStacks out;
  out.module = module;
  auto finish = [&]() -> PythonStacks {
    out.reads = memory.reads();
    out.bytes = memory.bytes();
    out.elapsed_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::steady_clock::now() - started)
                                               .count());
    if (out.status == PyStatus::ok && memory.exhausted()) {
      out.status = PyStatus::partial;
      out.detail = memory.failure() == ReadFailure::time ? "the time budget ran out"
                                                         : "the read budget ran out";
    }
    return std::move(out);
  };
  if (symbols.version == 0) {
    // Py_Version exists since 3.11: without it the interpreter is older, and not guessed at.
    out.status = PyStatus::unsupported;
    out.detail = "no Py_Version: a Python before 3.11";
    return finish();
  }
  const auto hex = memory.read_u32(symbols.version + bias);
  if (!hex) {
    out.detail = "Py_Version is not readable";
    return finish();
  }
  const unsigned major = (*hex >> 24) & 0xff;
  const unsigned minor = (*hex >> 16) & 0xff;
  out.version = std::to_string(major) + "." + std::to_string(minor) + "." +
                std::to_string((*hex >> 8) & 0xff);
  const uint64_t runtime = symbols.runtime + bias;
  std::optional<Layout> layout;
  if (major == 3 && (minor == 11 || minor == 12)) {
    layout = table_layout(minor);
  } else if (major == 3 && minor >= 13) {
    std::vector<std::byte> offsets(k_debug_offsets_size);
    if (!memory.read(runtime, offsets)) {
      out.detail = "_Py_DebugOffsets is not readable";
      return finish();
    }
    layout = debug_offsets_layout(offsets, minor, out.detail);
    if (!layout) {
      out.status = PyStatus::unsupported;
      return finish();
    }
  }
  if (!layout) {
    out.status = PyStatus::unsupported;
    out.detail = "no layout for Python " + out.version;
    return finish();
  }
  if (symbols.code_type == 0 || symbols.unicode_type == 0 || symbols.bytes_type == 0) {
    out.detail = "the module does not export the type objects";
    return finish();
  }
  const Layout& l = *layout;
  Walk walk(memory, symbols, bias, l);
  out.status = PyStatus::ok;
  out.finalizing = memory.read_u64(runtime + l.runtime_finalizing).value_or(0) != 0;

  // 3.11 has one GIL in _PyRuntime; later versions one per interpreter behind ceval.gil.
  auto gil_holder = [&](uint64_t gil) -> uint64_t {
    const auto locked = memory.read_u32(gil + l.gil_locked);
    const auto holder = memory.read_u64(gil + l.gil_holder);
    return (locked && *locked != 0 && holder) ? *holder : 0;
  };
  const uint64_t runtime_holder =
      l.runtime_gil_holder != 0 ? gil_holder(runtime + l.runtime_gil_holder - l.gil_holder) : 0;

  std::unordered_set<uint64_t> interps_seen;
  std::unordered_set<uint64_t> tstates_seen;
  uint64_t interp = memory.read_u64(runtime + l.runtime_interpreters_head).value_or(0);
  while (interp != 0 && interps_seen.size() < limits.max_interpreters &&
         interps_seen.insert(interp).second) {
    const uint64_t interp_id = memory.read_u64(interp + l.interp_id).value_or(0);
    uint64_t holder = runtime_holder;
    if (l.interp_ceval_gil != 0) {
      const uint64_t gil = memory.read_u64(interp + l.interp_ceval_gil).value_or(0);
      holder = gil != 0 ? gil_holder(gil) : 0;
    }
    uint64_t tstate = memory.read_u64(interp + l.interp_threads_head).value_or(0);
    while (tstate != 0 && tstates_seen.size() < limits.max_threads &&
           tstates_seen.insert(tstate).second) {
      PyThread t;
      t.interpreter_id = interp_id;
      t.native_thread_id = memory.read_u64(tstate + l.tstate_native_thread_id).value_or(0);
      t.thread_id = memory.read_u64(tstate + l.tstate_thread_id).value_or(0);
      t.holds_gil = holder == tstate;
      uint64_t frame = 0;
      if (l.tstate_cframe != 0) {
        const uint64_t cframe = memory.read_u64(tstate + l.tstate_cframe).value_or(0);
        frame = cframe != 0 ? memory.read_u64(cframe + l.cframe_current_frame).value_or(0) : 0;
      } else {
        frame = memory.read_u64(tstate + l.tstate_current_frame).value_or(0);
      }
      walk.frames(frame, t, limits.max_frames);
      if (t.truncated) {
        out.status = PyStatus::partial;
      }
      out.threads.push_back(std::move(t));
      const auto next = memory.read_u64(tstate + l.tstate_next);
      if (!next) {
        out.status = PyStatus::partial;
        break;
      }
      tstate = *next;
    }
    const auto next = memory.read_u64(interp + l.interp_next);
    if (!next) {
      out.status = PyStatus::partial;
      break;
    }
    interp = *next;
  }
  if (out.threads.empty() && out.status == PyStatus::ok) {
    out.status = PyStatus::invalid;
    out.detail = "no thread state";
  }
  if (out.status == PyStatus::partial && out.detail.empty()) {
    out.detail = "a pointer led outside the process's memory";
  }
  return finish();
}

} // namespace crash::python
