#include "cli/debuginfo/enrich.hpp"

#include "common/base/escape.hpp"
#include "common/base/hex.hpp"
#include "common/base/parse.hpp"
#include "common/crash/symbolize.hpp"

#include <cxxabi.h>
#include <elfutils/debuginfod.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace cli {

namespace {

using Clock = std::chrono::steady_clock;

struct ClientDeleter {
  void operator()(debuginfod_client* c) const { debuginfod_end(c); }
};
struct DwflDeleter {
  void operator()(Dwfl* d) const { dwfl_end(d); }
};

// The client calls this while it downloads: a non-zero return abandons the transfer, which is
// how the overall budget bounds a slow or stalled server.
int progress(debuginfod_client* c, long /*done*/, long /*total*/) {
  const auto* deadline = static_cast<const Clock::time_point*>(debuginfod_get_user_data(c));
  return deadline != nullptr && Clock::now() > *deadline ? 1 : 0;
}

std::string demangle(const char* name) {
  if (name == nullptr) {
    return {};
  }
  std::string s(name, strnlen(name, 4096));
  if (s.starts_with("_Z")) {
    int status = 0;
    char* out = abi::__cxa_demangle(s.c_str(), nullptr, nullptr, &status);
    if (status == 0 && out != nullptr) {
      s = out;
    }
    std::free(out); // NOLINT(cppcoreguidelines-no-malloc): __cxa_demangle allocates with malloc
  }
  if (const size_t at = s.find('@'); at != std::string::npos && at > 0) {
    s.resize(at);
  }
  return s;
}

// One fetched debug file, opened offline with libdwfl.
class DebugFile {
public:
  bool open(const std::string& path) {
    static const Dwfl_Callbacks k_offline = {
        .find_elf = dwfl_build_id_find_elf,
        .find_debuginfo = dwfl_standard_find_debuginfo,
        .section_address = dwfl_offline_section_address,
        .debuginfo_path = nullptr,
    };
    m_dwfl.reset(dwfl_begin(&k_offline));
    if (!m_dwfl) {
      return false;
    }
    dwfl_report_begin(m_dwfl.get());
    m_mod = dwfl_report_offline(m_dwfl.get(), "debug", path.c_str(), -1);
    dwfl_report_end(m_dwfl.get(), nullptr, nullptr);
    return m_mod != nullptr;
  }

  // The address libdwfl knows for `pc` of a module whose lowest PT_LOAD was mapped at `start`.
  // (A debug file keeps the program headers' addresses, not their file offsets: objcopy
  // rewrites those, so a file offset from the core cannot be converted through them.)
  std::optional<uint64_t> address_of(uint64_t pc, uint64_t start) const {
    GElf_Addr bias = 0;
    Elf* elf = dwfl_module_getelf(m_mod, &bias);
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

  Dwfl_Module* module() const { return m_mod; }

private:
  std::unique_ptr<Dwfl, DwflDeleter> m_dwfl;
  Dwfl_Module* m_mod = nullptr;
};

} // namespace

// Where each module's first mapping starts, from the record's `mappings`.
std::map<std::string, uint64_t> module_starts(const nlohmann::json& mappings) {
  std::map<std::string, uint64_t> out;
  if (!mappings.is_array()) {
    return out;
  }
  for (size_t i = 0; i < mappings.size(); ++i) {
    const nlohmann::json& m = mappings[i];
    if (!m.is_object() || !m.contains("path") || !m["path"].is_string() || !m.contains("start") ||
        !m["start"].is_string()) {
      continue;
    }
    if (const auto v = common::parse_hex_u64(m["start"].get<std::string>())) {
      out.emplace(m["path"].get<std::string>(), *v);
    }
  }
  return out;
}

bool has_build_id(const std::string& path, const std::string& build_id, std::string_view what) {
  std::string wanted = build_id;
  std::ranges::transform(wanted, wanted.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto got = common::read_build_id(path);
  if (got && *got == wanted) {
    return true;
  }
  std::fprintf(stderr,
               "corectl: warning: debuginfod answered %s %s with a file of build-id %s; "
               "ignoring it\n",
               std::string(what).c_str(), common::printable(wanted).c_str(),
               got ? common::printable(*got).c_str() : "(none)");
  return false;
}

std::optional<FetchedFile> fetch_executable(const std::string& build_id,
                                            std::chrono::milliseconds budget) {
  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (urls == nullptr || *urls == '\0' || !common::is_hex(build_id)) {
    return std::nullopt;
  }
  std::unique_ptr<debuginfod_client, ClientDeleter> client(debuginfod_begin());
  if (!client) {
    return std::nullopt;
  }
  const Clock::time_point deadline = Clock::now() + budget;
  debuginfod_set_user_data(client.get(), const_cast<Clock::time_point*>(&deadline));
  debuginfod_set_progressfn(client.get(), progress);
  char* path = nullptr;
  common::UniqueFd fd(debuginfod_find_executable(
      client.get(), reinterpret_cast<const unsigned char*>(build_id.c_str()), 0, &path));
  std::optional<FetchedFile> out;
  if (fd && path != nullptr && path[0] == '/' &&
      has_build_id(path, build_id, "the executable of build-id")) {
    out = FetchedFile{std::move(fd), std::string(path)};
  }
  std::free(path); // NOLINT(cppcoreguidelines-no-malloc): the client strdup()s it
  return out;
}

size_t enrich_with_debuginfod(nlohmann::json& crash, const nlohmann::json& mappings,
                              const EnrichOptions& options) {
  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (urls == nullptr || *urls == '\0' || !crash.is_object()) {
    return 0;
  }
  if (!crash.contains("stacks") || !crash["stacks"].is_array()) {
    return 0;
  }
  nlohmann::json& stacks = crash["stacks"];
  const std::map<std::string, uint64_t> starts = module_starts(mappings);
  std::unique_ptr<debuginfod_client, ClientDeleter> client(debuginfod_begin());
  if (!client) {
    return 0;
  }
  const Clock::time_point deadline = Clock::now() + options.budget;
  debuginfod_set_user_data(client.get(), const_cast<Clock::time_point*>(&deadline));
  debuginfod_set_progressfn(client.get(), progress);

  std::map<std::string, std::unique_ptr<DebugFile>> files; // build-id → file (null: none)
  size_t changed = 0;
  for (size_t ti = 0; ti < stacks.size(); ++ti) {
    nlohmann::json& thread = stacks[ti];
    if (!thread.is_object() || !thread.contains("frames") || !thread["frames"].is_array()) {
      continue;
    }
    nlohmann::json& frames = thread["frames"];
    for (size_t fi = 0; fi < frames.size(); ++fi) {
      nlohmann::json& f = frames[fi];
      if (!f.is_object() || !f.value("file", nlohmann::json()).is_null() ||
          f.value("inlined", false)) {
        continue;
      }
      const std::string build_id = f.value("build_id", nlohmann::json()).is_string()
                                       ? f["build_id"].get<std::string>()
                                       : std::string();
      const std::string pc_text =
          f.value("pc", nlohmann::json()).is_string() ? f["pc"].get<std::string>() : std::string();
      const std::string module =
          f.value("module", nlohmann::json()).is_string() ? f["module"].get<std::string>() : "";
      const auto pc = common::parse_hex_u64(pc_text);
      const auto start = starts.find(module);
      if (!common::is_hex(build_id) || !pc || start == starts.end()) {
        continue;
      }
      auto it = files.find(build_id);
      if (it == files.end()) {
        if (files.size() >= options.max_build_ids || Clock::now() > deadline) {
          continue;
        }
        char* path = nullptr;
        const int fd = debuginfod_find_debuginfo(
            client.get(), reinterpret_cast<const unsigned char*>(build_id.c_str()), 0, &path);
        std::unique_ptr<DebugFile> file;
        if (fd >= 0 && path != nullptr &&
            has_build_id(path, build_id, "the debug file of build-id")) {
          file = std::make_unique<DebugFile>();
          if (!file->open(path)) {
            file.reset();
          }
        }
        if (fd >= 0) {
          ::close(fd);
        }
        std::free(path); // NOLINT(cppcoreguidelines-no-malloc): the client strdup()s it
        it = files.emplace(build_id, std::move(file)).first;
      }
      if (!it->second) {
        continue;
      }
      const auto address = it->second->address_of(*pc, start->second);
      if (!address) {
        continue;
      }
      // Return addresses are looked up at the call instruction, as the handler does.
      const uint64_t at = f.value("trust", std::string()) == "context" ? *address : *address - 1;
      Dwfl_Module* mod = it->second->module();
      bool did = false;
      GElf_Off sym_offset = 0;
      GElf_Sym sym{};
      if (f.value("symbol", nlohmann::json()).is_null()) {
        if (const char* name =
                dwfl_module_addrinfo(mod, at, &sym_offset, &sym, nullptr, nullptr, nullptr)) {
          char hex[24];
          std::snprintf(hex, sizeof hex, "0x%llx",
                        static_cast<unsigned long long>(sym_offset + (*address - at)));
          f["symbol"] = {{"name", demangle(name)}, {"offset", hex}, {"verified", true}};
          did = true;
        }
      }
      if (Dwfl_Line* line = dwfl_module_getsrc(mod, at)) {
        int lineno = 0;
        if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
          f["file"] = std::string(file, strnlen(file, 4096));
          f["line"] = lineno;
          did = true;
        }
      }
      if (did) {
        f["enriched"] = "debuginfod";
        ++changed;
      }
    }
  }
  return changed;
}

} // namespace cli
