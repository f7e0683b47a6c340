#include "common/crash/debug_file.hpp"
#include "common/crash/symbolize.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <elfutils/libdw.h>
#include <fcntl.h>
#include <gelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>

using namespace common;

namespace {

// The debug sections of a small program built here with -g -O2 (location lists, ranges and
// inlined code included), split off and compressed the way distributions ship them
// (objcopy --only-keep-debug --compress-debug-sections=zlib).
std::filesystem::path compressed_debug_file(const test::TempDir& dir) {
  const auto src = dir.path() / "prog.c";
  test::spit(src, R"(#include <stdio.h>
#include <stdlib.h>
static int square(int x) { return x * x; }
__attribute__((noinline)) int sum(int n) {
  int total = 0;
  for (int i = 0; i < n; ++i) total += square(i) + rand() % 3;
  return total;
}
int main(int argc, char** argv) { printf("%d\n", sum(argc > 1 ? atoi(argv[1]) : 10)); }
)");
  const auto prog = dir.path() / "prog";
  const auto out = dir.path() / "prog.debug";
  const std::string cmd = "cc -g -O2 -o '" + prog.string() + "' '" + src.string() +
                          "' && objcopy --only-keep-debug --compress-debug-sections=zlib '" +
                          prog.string() + "' '" + out.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return out;
}

UniqueFd open_file(const std::filesystem::path& p) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  return fd;
}

struct ElfEnd {
  void operator()(Elf* e) const { elf_end(e); }
};

// Each section by name: its type, SHF_COMPRESSED, and its contents as libelf inflates them.
struct Section {
  uint32_t type = 0;
  bool compressed = false;
  std::string bytes;
};
std::map<std::string, Section> sections(int fd) {
  elf_version(EV_CURRENT);
  std::unique_ptr<Elf, ElfEnd> elf(elf_begin(fd, ELF_C_READ, nullptr));
  REQUIRE(elf);
  size_t shstrndx = 0;
  REQUIRE(elf_getshdrstrndx(elf.get(), &shstrndx) == 0);
  std::map<std::string, Section> out;
  for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn != nullptr;
       scn = elf_nextscn(elf.get(), scn)) {
    GElf_Shdr sh{};
    REQUIRE(gelf_getshdr(scn, &sh) != nullptr);
    Section s;
    s.type = sh.sh_type;
    s.compressed = (sh.sh_flags & SHF_COMPRESSED) != 0;
    if (s.compressed) {
      REQUIRE(elf_compress(scn, 0, 0) == 1);
    }
    if (sh.sh_type != SHT_NOBITS) {
      Elf_Data* d = elf_getdata(scn, nullptr);
      REQUIRE(d != nullptr);
      s.bytes.assign(static_cast<const char*>(d->d_buf), d->d_size);
    }
    out[elf_strptr(elf.get(), shstrndx, sh.sh_name)] = std::move(s);
  }
  return out;
}

// Compilation units libdw finds in the file.
size_t count_units(int fd) {
  std::unique_ptr<Elf, ElfEnd> elf(elf_begin(fd, ELF_C_READ_MMAP, nullptr));
  REQUIRE(elf);
  Dwarf* dw = dwarf_begin_elf(elf.get(), DWARF_C_READ, nullptr);
  REQUIRE(dw != nullptr);
  size_t n = 0;
  Dwarf_Off off = 0;
  Dwarf_Off next = 0;
  size_t header = 0;
  while (dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0) {
    ++n;
    off = next;
  }
  dwarf_end(dw);
  return n;
}

ino_t inode(int fd) {
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  return st.st_ino;
}

} // namespace

TEST_CASE("a compressed debug file is handed over inflated, with the sections libdw reads",
          "[debug_file]") {
  test::TempDir dir;
  const auto path = compressed_debug_file(dir);
  const auto original = sections(open_file(path).get());
  REQUIRE(original.at(".debug_info").compressed);

  UniqueFd image = prepare_debug_file(open_file(path), 1u << 30);
  REQUIRE(image);
  CHECK(inode(image.get()) != inode(open_file(path).get()));
  const auto rewritten = sections(image.get());
  REQUIRE(rewritten.size() == original.size()); // same indexes: symbols refer to sections by one
  for (const auto& [name, s] : original) {
    INFO(name);
    const Section& r = rewritten.at(name);
    CHECK_FALSE(r.compressed);
    static const std::set<std::string> k_kept = {
        ".debug_info", ".debug_abbrev",  ".debug_line",     ".debug_line_str",
        ".debug_str",  ".debug_aranges", ".debug_rnglists", ".debug_ranges"};
    const bool dropped = name.starts_with(".debug_loc") || name.starts_with(".debug_macro");
    if (dropped) {
      CHECK(r.type == SHT_NOBITS); // location lists and macros: never read for a backtrace
    } else if (s.type != SHT_NOBITS && (k_kept.contains(name) || s.type == SHT_SYMTAB ||
                                        s.type == SHT_STRTAB || s.type == SHT_NOTE)) {
      CHECK(r.type == s.type);
      CHECK(r.bytes == s.bytes);
    }
  }
  CHECK(count_units(image.get()) == count_units(open_file(path).get()));
  CHECK(count_units(image.get()) > 0);
}

TEST_CASE("a debug file is not rewritten when nothing needs inflating or it is too large",
          "[debug_file]") {
  test::TempDir dir;
  const auto path = compressed_debug_file(dir);
  const auto plain = dir.path() / "plain.debug";
  const std::string cmd =
      "objcopy --decompress-debug-sections '" + path.string() + "' '" + plain.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  UniqueFd fd = open_file(plain);
  const ino_t ino = inode(fd.get());
  UniqueFd same = prepare_debug_file(std::move(fd), 1u << 30);
  REQUIRE(same);
  CHECK(inode(same.get()) == ino);
  // Inflated, the sections would exceed the budget: refused, not inflated.
  const uint64_t packed = std::filesystem::file_size(path);
  CHECK_FALSE(prepare_debug_file(open_file(path), packed));
  CHECK_FALSE(prepare_debug_file(open_file(plain), std::filesystem::file_size(plain) - 1));
}

TEST_CASE("a broken debug file gives no image and no crash", "[debug_file]") {
  test::TempDir dir;
  const auto path = compressed_debug_file(dir);
  std::string bytes = test::slurp(path);

  SECTION("a corrupt zlib stream drops that section only") {
    const auto original = sections(open_file(path).get());
    // Flip bytes in the middle of the compressed .debug_info.
    const UniqueFd fd = open_file(path);
    std::unique_ptr<Elf, ElfEnd> elf(elf_begin(fd.get(), ELF_C_READ, nullptr));
    REQUIRE(elf);
    size_t shstrndx = 0;
    REQUIRE(elf_getshdrstrndx(elf.get(), &shstrndx) == 0);
    uint64_t at = 0;
    uint64_t size = 0;
    for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn != nullptr;
         scn = elf_nextscn(elf.get(), scn)) {
      GElf_Shdr sh{};
      gelf_getshdr(scn, &sh);
      if (std::string_view(elf_strptr(elf.get(), shstrndx, sh.sh_name)) == ".debug_info") {
        at = sh.sh_offset;
        size = sh.sh_size;
      }
    }
    REQUIRE(size > 64);
    for (uint64_t i = size / 2; i < size / 2 + 16; ++i) {
      bytes[at + i] = static_cast<char>(~bytes[at + i]);
    }
    test::spit(path, bytes);
    UniqueFd image = prepare_debug_file(open_file(path), 1u << 30);
    REQUIRE(image);
    const auto rewritten = sections(image.get());
    CHECK(rewritten.at(".debug_info").type == SHT_NOBITS);
    CHECK(rewritten.at(".debug_abbrev").bytes == original.at(".debug_abbrev").bytes);
  }
  SECTION("a truncated file") {
    test::spit(path, bytes.substr(0, bytes.size() / 2));
    // The section table is at the end: nothing to rewrite from, and nothing usable.
    UniqueFd fd = prepare_debug_file(open_file(path), 1u << 30);
    if (fd) {
      CHECK(inode(fd.get()) == inode(open_file(path).get())); // handed to libelf as it is
    }
  }
  SECTION("not an ELF file") {
    test::spit(path, std::string(4096, 'x'));
    CHECK_FALSE(prepare_debug_file(open_file(path), 1u << 30));
  }
}

namespace {

// A small program with `contents` as its .gnu_debugaltlink section (objcopy --add-section).
std::filesystem::path with_altlink(const test::TempDir& dir, const std::string& name,
                                   const std::string& contents) {
  const auto src = dir.path() / "alt.c";
  test::spit(src, "int main(void) { return 0; }\n");
  const auto link = dir.path() / (name + ".link");
  test::spit(link, contents);
  const auto out = dir.path() / name;
  const std::string cmd = "cc -g -Wl,--build-id -o '" + out.string() + "' '" + src.string() +
                          "' && objcopy --add-section .gnu_debugaltlink='" + link.string() + "' '" +
                          out.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return out;
}

} // namespace

TEST_CASE("the DWZ alternate file a debug file names, and a file's build-id from its sections",
          "[debug_file]") {
  const test::TempDir dir;
  const std::string id("\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x00\xff",
                       18);
  const auto good = with_altlink(
      dir, "good", std::string("/usr/lib/debug/.dwz/x.debug") + std::string(1, '\0') + id);
  const auto link = read_debug_altlink(open_file(good).get());
  REQUIRE(link);
  CHECK(link->path == "/usr/lib/debug/.dwz/x.debug");
  CHECK(link->build_id == "0123456789abcdef0123456789abcdef00ff");
  // The program's own build-id, from its note sections, as from its program headers.
  const auto own = read_section_build_id(open_file(good).get());
  REQUIRE(own);
  CHECK(own == read_build_id(good.string()));

  // No NUL after the path, nothing after it, a link too large to be one: none.
  CHECK_FALSE(read_debug_altlink(open_file(with_altlink(dir, "no-nul", "/a/b")).get()));
  CHECK_FALSE(read_debug_altlink(
      open_file(with_altlink(dir, "no-id", std::string("/a/b") + std::string(1, '\0'))).get()));
  CHECK_FALSE(read_debug_altlink(
      open_file(with_altlink(dir, "huge", std::string(5000, 'a') + std::string(1, '\0') + id))
          .get()));
  // A file without the section, and what is no ELF file at all.
  const auto plain = dir.path() / "alt.c";
  CHECK_FALSE(read_debug_altlink(open_file(plain).get()));
  CHECK_FALSE(read_section_build_id(open_file(plain).get()));
  CHECK_FALSE(read_debug_altlink(-1));
}
