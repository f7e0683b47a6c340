#include "cli/debuginfo/debuginfo_lookup.hpp"

#include "common/base/json_bounds.hpp"
#include "common/crash/dwfl_ptr.hpp"
#include "common/crash/symbol_name.hpp"
#include "common/sandbox/analysis_child.hpp"

#include <nlohmann/json.hpp>

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace cli {

namespace {

constexpr size_t k_max_text = 4096;        // bytes of a name or a file name
constexpr size_t k_max_answer = 16u << 20; // bytes of the child's answer
constexpr auto k_min_window = std::chrono::seconds(1);
constexpr auto k_max_window = std::chrono::seconds(5);

// No path is looked up for the debug file's own debug file: it is its own, and the sandbox
// would refuse the open anyway.
int no_debuginfo(Dwfl_Module* /*mod*/, void** /*userdata*/, const char* /*name*/,
                 Dwarf_Addr /*base*/, const char* /*file_name*/, const char* /*debuglink*/,
                 GElf_Word /*crc*/, char** /*debuginfo_file_name*/) {
  return -1;
}

// The address libdwfl knows for `pc` of a module whose lowest PT_LOAD was mapped at `start`.
// (A debug file keeps the program headers' addresses, not their file offsets: objcopy rewrites
// those, so a file offset from the core cannot be converted through them.)
std::optional<uint64_t> address_of(Dwfl_Module* mod, uint64_t pc, uint64_t start) {
  GElf_Addr bias = 0;
  Elf* elf = dwfl_module_getelf(mod, &bias);
  size_t phnum = 0;
  if (elf == nullptr || elf_getphdrnum(elf, &phnum) != 0 || pc < start) {
    return std::nullopt;
  }
  std::optional<uint64_t> base;
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph{};
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) != nullptr && ph.p_type == PT_LOAD) {
      const uint64_t align = ph.p_align > 1 ? ph.p_align : 1;
      const uint64_t v = ph.p_vaddr & ~(align - 1);
      base = base ? std::min(*base, v) : v;
    }
  }
  if (!base) {
    return std::nullopt;
  }
  return pc - start + *base + bias;
}

// In the child: [[name|null, offset, file|null, line], …], one per query.
std::string look_up(int fd, std::span<const LookupQuery> queries) {
  static const Dwfl_Callbacks k_offline = {
      .find_elf = dwfl_build_id_find_elf,
      .find_debuginfo = no_debuginfo,
      .section_address = dwfl_offline_section_address,
      .debuginfo_path = nullptr,
  };
  nlohmann::json out = nlohmann::json::array();
  const common::DwflPtr dwfl(dwfl_begin(&k_offline));
  Dwfl_Module* mod = nullptr;
  if (dwfl) {
    dwfl_report_begin(dwfl.get());
    // libdwfl closes the descriptor it is given with the module.
    mod = dwfl_report_offline(dwfl.get(), "debug", "debug", ::fcntl(fd, F_DUPFD_CLOEXEC, 3));
    dwfl_report_end(dwfl.get(), nullptr, nullptr);
  }
  for (const LookupQuery& q : queries) {
    nlohmann::json answer = {nullptr, 0, nullptr, 0};
    const auto address = mod != nullptr ? address_of(mod, q.pc, q.start) : std::nullopt;
    if (address) {
      // Return addresses are looked up at the call instruction, as the handler does.
      const uint64_t at = q.exact ? *address : *address - 1;
      GElf_Off offset = 0;
      GElf_Sym sym{};
      if (const char* name =
              dwfl_module_addrinfo(mod, at, &offset, &sym, nullptr, nullptr, nullptr)) {
        answer[0] = common::elf_symbol_name(name);
        answer[1] = offset + (*address - at);
      }
      if (Dwfl_Line* line = dwfl_module_getsrc(mod, at)) {
        int lineno = 0;
        if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
          answer[2] = std::string(file, strnlen(file, k_max_text));
          answer[3] = lineno;
        }
      }
    }
    out.push_back(std::move(answer));
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<std::string> text_field(const nlohmann::json& v) {
  if (!v.is_string() || v.get_ref<const std::string&>().size() > k_max_text) {
    return std::nullopt;
  }
  return v.get<std::string>();
}

} // namespace

common::Expected<std::vector<LookupAnswer>>
lookup_in_child(int debug_fd, std::span<const LookupQuery> queries,
                std::chrono::steady_clock::time_point deadline) {
  const auto now = std::chrono::steady_clock::now();
  const auto window =
      std::clamp<std::chrono::steady_clock::duration>(deadline - now, k_min_window, k_max_window);
  sandbox::ChildLimits limits;
  limits.cpu_seconds =
      static_cast<unsigned>(std::chrono::ceil<std::chrono::seconds>(window).count());
  limits.max_output = k_max_answer;
  const int keep[] = {debug_fd};
  const sandbox::ChildResult child =
      sandbox::run_in_child([&] { return look_up(debug_fd, queries); }, keep, limits, now + window,
                            -1, /*drop_root=*/true);
  if (!child.output) {
    return common::fail(child.failure);
  }
  if (const std::string bad = common::json_bounds_error(*child.output, k_max_answer, 3);
      !bad.empty()) {
    return common::fail("answer " + bad);
  }
  const nlohmann::json j = nlohmann::json::parse(*child.output, nullptr, false);
  if (!j.is_array() || j.size() != queries.size()) {
    return common::fail("answer is not one entry per frame");
  }
  std::vector<LookupAnswer> out;
  out.reserve(j.size());
  for (const auto& a : j) {
    if (!a.is_array() || a.size() != 4 || !(a[0].is_null() || a[0].is_string()) ||
        !a[1].is_number_unsigned() || !(a[2].is_null() || a[2].is_string()) ||
        !a[3].is_number_integer()) {
      return common::fail("answer has an entry of the wrong shape");
    }
    LookupAnswer answer;
    answer.symbol = text_field(a[0]);
    answer.symbol_offset = a[1].get<uint64_t>();
    answer.file = text_field(a[2]);
    const auto line = a[3].get<int64_t>();
    answer.line = line >= 0 && line <= INT_MAX ? static_cast<int>(line) : 0;
    out.push_back(std::move(answer));
  }
  return out;
}

} // namespace cli
