// The core image the Python walker reads a stored core through: segments kept from a stream cut
// anywhere, within the bound, the file behind pages the kernel did not dump, and hostile headers;
// the decompressing pass that stops early; the walk of a stored core that is not one.
#include "common/crash/python/core_image.hpp"
#include "common/crash/python/stored.hpp"
#include "common/crash/zstd_stream.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <vector>

using namespace crash::python;

namespace {

struct Seg {
  uint64_t vaddr, memsz, filesz;
  uint32_t flags;
  std::byte fill;
};

// An ELF core: the header, the program headers, then each segment's dumped bytes (`fill`).
std::vector<std::byte> make_core(const std::vector<Seg>& segs) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_CORE;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<uint16_t>(segs.size());
  std::vector<std::byte> out(sizeof eh + segs.size() * sizeof(Elf64_Phdr));
  std::memcpy(out.data(), &eh, sizeof eh);
  uint64_t offset = out.size();
  for (size_t i = 0; i < segs.size(); ++i) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_vaddr = segs[i].vaddr;
    ph.p_memsz = segs[i].memsz;
    ph.p_filesz = segs[i].filesz;
    ph.p_flags = segs[i].flags;
    ph.p_offset = offset;
    offset += segs[i].filesz;
    std::memcpy(out.data() + sizeof eh + i * sizeof ph, &ph, sizeof ph);
  }
  for (const Seg& s : segs) {
    out.insert(out.end(), s.filesz, s.fill);
  }
  return out;
}

void feed(CoreImageCollector& c, std::span<const std::byte> core, size_t step) {
  for (size_t at = 0; at < core.size(); at += step) {
    c.observe(core.subspan(at, std::min(step, core.size() - at)));
  }
}

int memfd_with(std::span<const std::byte> bytes) {
  const int fd = ::memfd_create("image", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  return fd;
}

} // namespace

TEST_CASE("The core image keeps the dumped data segments from a stream cut anywhere", "[python]") {
  const std::vector<Seg> segs = {
      {0x10000, 0x2000, 0x2000, PF_R | PF_W, std::byte{0xaa}}, // heap: kept
      {0x20000, 0x1000, 0x1000, PF_R | PF_X, std::byte{0xcc}}, // code: left out
      {0x30000, 0x2000, 0x1000, PF_R, std::byte{0xee}},        // first page dumped, rest not
  };
  const auto core = make_core(segs);
  for (size_t step : {size_t{1}, size_t{7}, size_t{4096}, core.size()}) {
    CoreImageCollector c;
    feed(c, core, step);
    CHECK_FALSE(c.wants_more());
    CHECK(c.error().empty());
    REQUIRE(c.segments().size() == 3);
    CHECK(c.segments()[0].bytes.size() == 0x2000);
    CHECK(c.segments()[1].bytes.empty());
    CHECK(c.segments()[2].bytes.size() == 0x1000);
  }
  // The file behind the part of the third segment the kernel did not dump.
  std::vector<std::byte> file(0x2000, std::byte{0x11});
  const int fd = memfd_with(file);
  CoreImageCollector c;
  feed(c, core, 100);
  CoreImageReader r(c.take_segments(), {ImageFile{0x30000, 0x32000, 0, fd}});
  std::array<std::byte, 8> out{};
  CHECK(r.read(0x10ff8, out));
  CHECK(out[0] == std::byte{0xaa});
  CHECK(r.read(0x31000, out)); // not dumped: the file's bytes
  CHECK(out[0] == std::byte{0x11});
  CHECK(r.read(0x30000, out)); // dumped: the core's, not the file's
  CHECK(out[0] == std::byte{0xee});
  r.start(Budget{});
  CHECK_FALSE(r.read(0x20000, out)); // dumped but not kept: unknown, never the file's
  r.start(Budget{});
  CHECK_FALSE(r.read(0x40000, out)); // outside every segment
  CHECK(r.failure() == ReadFailure::unmapped);
  ::close(fd);
}

TEST_CASE("The core image stays within its bound and reads no lost bytes", "[python]") {
  const auto core = make_core({{0x10000, 0x1000, 0x1000, PF_R | PF_W, std::byte{1}},
                               {0x20000, 0x3000, 0x3000, PF_R | PF_W, std::byte{2}}});
  CoreImageCollector c(0x2000);
  feed(c, core, 512);
  CHECK(c.left_out() == 0x3000);
  CoreImageReader r(c.take_segments(), {});
  std::array<std::byte, 8> out{};
  CHECK(r.read(0x10000, out));
  CHECK_FALSE(r.read(0x20000, out));

  // A core cut in its second segment: what arrived is read, the rest is not.
  const std::span<const std::byte> cut = std::span(core).first(core.size() - 0x2000);
  CoreImageCollector t;
  feed(t, cut, 333);
  CHECK(t.wants_more());
  CoreImageReader rt(t.take_segments(), {});
  CHECK(rt.read(0x20ff8, out));
  rt.start(Budget{});
  CHECK_FALSE(rt.read(0x21000, out));
}

TEST_CASE("The core image refuses what is not a core, without reading on", "[python]") {
  std::vector<std::byte> junk(4096, std::byte{'x'});
  CoreImageCollector a;
  feed(a, junk, 10);
  CHECK_FALSE(a.wants_more());
  CHECK_FALSE(a.error().empty());

  auto core = make_core({{0x10000, 0x1000, 0x1000, PF_R | PF_W, std::byte{1}}});
  Elf64_Ehdr eh{};
  std::memcpy(&eh, core.data(), sizeof eh);
  eh.e_phnum = PN_XNUM;
  std::memcpy(core.data(), &eh, sizeof eh);
  CoreImageCollector b;
  feed(b, core, 64);
  CHECK_FALSE(b.wants_more());
  CHECK_FALSE(b.error().empty());

  // Segments whose sizes wrap around are skipped; overlapping ones are read as the first.
  auto wraps = make_core({{0x10000, UINT64_MAX - 0x100, 0x1000, PF_R | PF_W, std::byte{1}},
                          {0x20000, 0x2000, 0x1000, PF_R | PF_W, std::byte{2}},
                          {0x21000, 0x1000, 0x1000, PF_R | PF_W, std::byte{3}}});
  CoreImageCollector w;
  feed(w, wraps, 1000);
  CHECK(w.segments().size() == 2);
  CoreImageReader rw(w.take_segments(), {});
  std::array<std::byte, 8> out{};
  CHECK_FALSE(rw.read(0x10000, out));
  rw.start(Budget{});
  CHECK(rw.read(0x20000, out));
  CHECK(out[0] == std::byte{2});
}

TEST_CASE("A stored core's pass stops when nothing more is wanted", "[python]") {
  std::vector<std::byte> raw(1 << 20);
  for (size_t i = 0; i < raw.size(); ++i) {
    raw[i] = static_cast<std::byte>(i * 7);
  }
  const int fd = ::memfd_create("core.zst", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  {
    auto w = common::ZstdWriter::create(fd, 1, 0);
    REQUIRE(w);
    REQUIRE(w->write(raw));
    REQUIRE(w->finish());
  }
  REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
  uint64_t seen = 0;
  auto n =
      common::zstd_decompress_each(fd, [&](std::span<const std::byte> c) -> common::Expected<bool> {
        seen += c.size();
        return seen < 4096;
      });
  REQUIRE(n);
  CHECK(*n == seen);
  CHECK(seen < raw.size());

  // Not a core: said, with no stacks.
  REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
  const PythonStacks s =
      walk_stored_core(fd, CoreEncoding::zstd, {}, WalkLimits{},
                       std::chrono::steady_clock::now() + std::chrono::seconds(5));
  CHECK(s.status == PyStatus::failed);
  CHECK(s.source == "core");
  CHECK(s.threads.empty());
  CHECK_FALSE(s.detail.empty());
  ::close(fd);
}

TEST_CASE("CPython files are known by their names", "[python]") {
  CHECK(cpython_file_name("python3.11"));
  CHECK(cpython_file_name("python3.12d"));
  CHECK(cpython_file_name("libpython3.13.so.1.0"));
  CHECK(cpython_file_name("python2.7"));
  CHECK_FALSE(cpython_file_name("python"));
  CHECK_FALSE(cpython_file_name("libpython3.11.a"));
  CHECK_FALSE(cpython_file_name("pythonista"));
  CHECK_FALSE(cpython_file_name("uwsgi"));
}

TEST_CASE("Stacks are cut to their share, the crashing thread kept", "[python]") {
  PythonStacks s;
  s.status = PyStatus::ok;
  for (uint64_t t = 1; t <= 8; ++t) {
    PyThread th;
    th.native_thread_id = t;
    th.frames.assign(
        200, PyFrame{"function_with_a_long_name", "/some/long/path/to/a/file.py", 1, false});
    s.threads.push_back(th);
  }
  fit_stacks(s, 5, 8 << 10);
  CHECK(s.status == PyStatus::partial);
  CHECK_FALSE(s.cut.empty());
  REQUIRE_FALSE(s.threads.empty());
  CHECK(s.threads.front().native_thread_id == 5);
  CHECK(to_json(s).dump().size() <= 8 << 10);
}
