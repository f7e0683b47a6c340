// libFuzzer target for the package lookup (common/packages, built by run_fuzz_packages.sh): a
// crashed root whose dpkg status, one .list file, a dist-info RECORD and a package.json are the
// input's four parts (split at "\n--\n"), looked up for fixed paths; then the input as two
// Debian versions, as a package manager log, as two records to compare, as a dpkg index file
// (its checksum fixed up, so that the structure behind it is reached), and as the crash groups'
// files (resolve marks, seen-set) and a resolve target. Nothing may read outside the input or a
// file's bounds, the version order must stay antisymmetric, and a dpkg index or group file that
// parses must read back the same after it is written.
#include "common/packages/changes.hpp"
#include "common/packages/debian_version.hpp"
#include "common/packages/dpkg_index.hpp"
#include "common/packages/group_state.hpp"
#include "common/packages/ownership.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

const std::filesystem::path& root_dir() {
  static const std::filesystem::path dir = [] {
    char tmpl[] = "/tmp/pc-fuzz-packages-XXXXXX";
    std::filesystem::path d = ::mkdtemp(tmpl);
    std::filesystem::create_directories(d / "var/lib/dpkg/info");
    std::filesystem::create_directories(d / "usr/lib/python3/dist-packages/x-1.0.dist-info");
    std::filesystem::create_directories(d / "srv/node_modules/p");
    return d;
  }();
  return dir;
}

void put(const std::string& rel, std::string_view text) {
  std::ofstream(root_dir() / rel, std::ios::binary | std::ios::trunc)
      .write(text.data(), static_cast<std::streamsize>(text.size()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  std::string_view rest = input;
  while (parts.size() < 3) {
    const size_t at = rest.find("\n--\n");
    if (at == std::string_view::npos) {
      break;
    }
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + 4);
  }
  parts.push_back(rest);
  parts.resize(4);
  put("var/lib/dpkg/status", parts[0]);
  put("var/lib/dpkg/info/pkg:amd64.list", parts[1]);
  put("usr/lib/python3/dist-packages/x-1.0.dist-info/RECORD", parts[2]);
  put("srv/node_modules/p/package.json", parts[3]);
  static const int root = ::open(root_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  common::OwnershipLimits limits;
  limits.max_list_bytes = 1 << 16;
  (void)common::find_owners(root,
                            {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/bin/sh",
                             "/usr/lib/python3/dist-packages/x/y.so", "/srv/node_modules/p/a.node",
                             "/var/lib/gems/3.1.0/gems/a-1/b.so"},
                            limits);

  const size_t half = size / 2;
  const std::string_view a = input.substr(0, half);
  const std::string_view b = input.substr(half);
  const int ab = common::compare_debian_versions(a, b);
  const int ba = common::compare_debian_versions(b, a);
  if ((ab < 0 && ba <= 0) || (ab > 0 && ba >= 0) || (ab == 0 && ba != 0)) {
    std::abort();
  }
  (void)common::package_log_lines(input, {"pkg", std::string(a.substr(0, 8))});
  const auto ja = nlohmann::json::parse(a, nullptr, false);
  const auto jb = nlohmann::json::parse(b, nullptr, false);
  (void)common::describe(common::diff_records(ja, jb));

  std::string index(input);
  if (index.size() >= 32) {
    const uint64_t sum = common::index_hash(std::string_view(index).substr(16));
    std::memcpy(index.data() + 8, &sum, sizeof sum);
    uint32_t state_len = 0;
    std::memcpy(&state_len, index.data() + 20, sizeof state_len);
    const std::string_view state = std::string_view(index).substr(32, state_len);
    if (auto parsed = common::DpkgIndex::parse(index, state)) {
      (void)parsed->find("/lib/x86_64-linux-gnu/libc.so.6");
      // What parse() accepts serializes back to the same bytes.
      if (parsed->serialize(state) != index) {
        std::abort();
      }
    }
  }
  if (auto marks = common::parse_marks(input)) {
    auto again = common::parse_marks(common::marks_to_text(*marks));
    if (!again || again->by_group != marks->by_group) {
      std::abort();
    }
    for (const auto& [group, mark] : marks->by_group) {
      (void)common::regresses(mark, common::crash_version(ja));
    }
  }
  if (auto seen = common::parse_seen(input)) {
    auto again = common::parse_seen(common::seen_to_text(*seen));
    if (!again || !(*again == *seen)) {
      std::abort();
    }
  }
  if (auto target = common::parse_resolve_target(a)) {
    (void)common::regresses(*target, common::crash_version(jb));
    (void)common::describe_mark(*target);
  }
  return 0;
}
