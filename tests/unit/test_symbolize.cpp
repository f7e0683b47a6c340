#include "common/crash/symbolize.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

using namespace common;

namespace {

template <typename T>
void put(std::string& s, size_t at, T v) {
  std::memcpy(s.data() + at, &v, sizeof v);
}

// An ELF file with `count` PT_NOTE headers, all over the same `size` bytes of empty notes and
// none of them a build-id: every one would be read in vain.
std::string note_bomb(uint16_t count, uint64_t size) {
  const uint64_t notes_off = 64 + uint64_t{count} * 56;
  std::string f(notes_off + size, '\0');
  std::memcpy(f.data(),
              "\x7f"
              "ELF\x02\x01\x01",
              7);
  put<uint16_t>(f, 16, 3);  // ET_DYN
  put<uint16_t>(f, 18, 62); // EM_X86_64
  put<uint64_t>(f, 32, 64); // e_phoff
  put<uint16_t>(f, 52, 64);
  put<uint16_t>(f, 54, 56);
  put<uint16_t>(f, 56, count);
  for (uint64_t i = 0; i < count; ++i) {
    const size_t at = 64 + i * 56;
    put<uint32_t>(f, at, 4);             // PT_NOTE
    put<uint64_t>(f, at + 8, notes_off); // p_offset
    put<uint64_t>(f, at + 32, size);     // p_filesz
    put<uint64_t>(f, at + 48, 4);        // p_align
  }
  return f;
}

} // namespace

TEST_CASE("reading mapped files costs a bounded amount whatever they hold", "[symbolize]") {
  test::TempDir dir;
  const auto first = dir.path() / "lib0.so";
  test::spit(first, note_bomb(0xffff, 64 << 10));
  std::vector<FileMapping> files;
  std::map<std::string, std::string> ids;
  for (int i = 0; i < 8; ++i) {
    const auto p = dir.path() / ("lib" + std::to_string(i) + ".so");
    if (i > 0) {
      std::filesystem::create_hard_link(first, p);
    }
    files.push_back({0x1000u * static_cast<uint64_t>(i + 1), 0x1000u * static_cast<uint64_t>(i + 2),
                     0, p.string()});
    ids[p.string()] = "00112233445566778899aabbccddeeff00112233";
  }
  const auto start = std::chrono::steady_clock::now();
  const auto findings = check_mapped_files(files, ids, std::nullopt);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < std::chrono::seconds(2));
  size_t replaced = 0;
  for (const auto& f : findings) {
    replaced += f.kind == FindingKind::replaced ? 1 : 0;
  }
  CHECK(replaced == 8); // still checked: no build-id on disk, one in the process
}

TEST_CASE("the build-id of a real module is still found", "[symbolize]") {
  const auto self = std::filesystem::read_symlink("/proc/self/exe");
  const auto id = read_build_id(self.string());
  REQUIRE(id);
  CHECK(id->size() >= 16);
}
