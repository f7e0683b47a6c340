// The Python stacks of a core, read afterwards from its segments and the interpreter's file.
#include "common/crash/python/stored.hpp"

#include "common/base/io.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/elf_notes.hpp"
#include "common/crash/python/core_image.hpp"
#include "common/crash/zstd_stream.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <vector>

namespace crash::python {

namespace {

// Bytes of a file's start read for its build-id note (the scanner keeps as much of each image).
constexpr size_t k_header_bytes = 64 << 10;

// The GNU build-id of the ELF file open as `fd`, and its first bytes' view of the image.
struct FileIdentity {
  std::string build_id;
  common::ElfImage image;
};

FileIdentity identify(int fd) {
  std::vector<std::byte> head(k_header_bytes);
  size_t got = 0;
  while (got < head.size()) {
    const ssize_t n = ::pread(fd, head.data() + got, head.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break; // a file shorter than the window is fine; its build-id note is read or not
    }
    got += static_cast<size_t>(n);
  }
  head.resize(got);
  FileIdentity id;
  id.image = common::read_elf_image(head);
  id.build_id = id.image.gnu_build_id;
  return id;
}

// Where one candidate is in the core: the image's first address and its file mappings.
struct Located {
  uint64_t start = 0;
  std::vector<ImageFile> files;
};

// The image by its NT_FILE entries: the loaded group of that path, its build-id from the core's
// copy of its first page equal to the file's. `why` says why not, when the path is there.
std::optional<Located> by_nt_file(const common::CoreFacts& facts, const CandidateFile& c,
                                  const FileIdentity& id, std::string& why) {
  for (const common::ModuleGroup& g : facts.modules) {
    if (g.path != c.path || !g.header) {
      continue;
    }
    if (g.build_id.empty() || id.build_id.empty()) {
      why = "the build-id of '" + c.path + "' is not " +
            (g.build_id.empty() ? "in the core" : "in the file") +
            ": the file is not known to be the one that was mapped";
      return std::nullopt;
    }
    if (g.build_id != id.build_id) {
      why = "'" + c.path + "' changed on disk since the crash: its build-id is " + id.build_id +
            ", the core's " + g.build_id;
      return std::nullopt;
    }
    Located out{g.start, {}};
    for (size_t i = g.first; i < g.first + g.count && i < facts.files.size(); ++i) {
      const common::FileMapping& f = facts.files[i];
      out.files.push_back(ImageFile{f.start, f.end, f.file_offset, c.fd});
    }
    return out;
  }
  return std::nullopt;
}

// Without an NT_FILE entry: a dumped first page of an ELF image whose build-id is the file's.
// The image's mappings then follow from the file's own program headers and that address.
std::optional<Located> by_elf_header(std::span<const CoreSegment> segments, const CandidateFile& c,
                                     const FileIdentity& id) {
  if (id.build_id.empty() || id.image.loads.empty()) {
    return std::nullopt;
  }
  for (const CoreSegment& s : segments) {
    if (s.bytes.size() < 64 || common::find_gnu_build_id(s.bytes) != id.build_id) {
      continue;
    }
    constexpr uint64_t k_page = 4096;
    const uint64_t first = id.image.loads.front().vaddr & ~(k_page - 1);
    Located out{s.vaddr, {}};
    for (const auto& load : id.image.loads) {
      const uint64_t at = load.vaddr & ~(k_page - 1);
      const uint64_t off = load.offset & ~(k_page - 1);
      const uint64_t len = load.filesz + (load.vaddr - at);
      if (at < first || s.vaddr + (at - first) + len < s.vaddr) {
        continue;
      }
      const uint64_t start = s.vaddr + (at - first);
      out.files.push_back(ImageFile{start, start + len, off, c.fd});
    }
    return out;
  }
  return std::nullopt;
}

PythonStacks failed(std::string detail) {
  PythonStacks s;
  s.status = PyStatus::failed;
  s.detail = std::move(detail);
  s.source = "core";
  return s;
}

} // namespace

bool cpython_file_name(std::string_view base) {
  if (base.starts_with("lib")) {
    base.remove_prefix(3);
    if (!base.starts_with("python") || base.find(".so") == std::string_view::npos) {
      return false;
    }
  }
  if (!base.starts_with("python")) {
    return false;
  }
  base.remove_prefix(6);
  // A major version, a dot, a minor version.
  return base.size() >= 3 && (base[0] == '2' || base[0] == '3') && base[1] == '.' &&
         base[2] >= '0' && base[2] <= '9';
}

PythonStacks walk_stored_core(int core_fd, CoreEncoding encoding,
                              std::span<const CandidateFile> candidates, const WalkLimits& limits,
                              std::chrono::steady_clock::time_point deadline) {
  // One pass: the scanner reads the notes (NT_FILE, the threads, the images' build-ids), the
  // collector the segments; the stream stops as soon as neither wants more.
  common::CoreScanner scanner;
  CoreImageCollector image;
  bool late = false;
  const auto sink = [&](std::span<const std::byte> chunk) -> common::Expected<bool> {
    if (scanner.wants_more()) {
      scanner.observe(chunk);
    }
    image.observe(chunk);
    if (std::chrono::steady_clock::now() > deadline) {
      late = true;
      return false;
    }
    return scanner.wants_more() || image.wants_more();
  };
  common::Expected<uint64_t> read;
  if (encoding == CoreEncoding::zstd) {
    read = common::zstd_decompress_each(core_fd, sink);
  } else {
    std::vector<std::byte> buf(1 << 16);
    read = 0;
    for (bool more = true; more;) {
      auto n = common::read_some(core_fd, buf);
      if (!n) {
        read = std::unexpected(n.error());
        break;
      }
      if (*n == 0) {
        break;
      }
      auto m = sink(std::span(buf).first(*n));
      more = m && *m;
    }
  }
  if (!read) {
    return failed("the core could not be read: " + read.error().message);
  }
  if (late) {
    return failed("reading the core took longer than its time bound");
  }
  scanner.finish();
  if (!image.error().empty()) {
    return failed("the core's segments could not be read: " + image.error());
  }
  const common::CoreFacts& facts = scanner.facts();
  std::vector<CoreSegment> segments = image.take_segments();

  std::string why;
  for (const CandidateFile& c : candidates) {
    if (c.fd < 0) {
      continue;
    }
    const FileIdentity id = identify(c.fd);
    std::optional<Located> at = by_nt_file(facts, c, id, why);
    if (!at && why.empty()) {
      at = by_elf_header(segments, c, id);
    }
    if (!at) {
      continue;
    }
    auto symbols = read_python_symbols(c.fd);
    if (!symbols) {
      continue; // not the interpreter (the executable of an embedding, python2's name …)
    }
    const uint64_t bias = symbols->pie ? at->start - symbols->first_load_vaddr : 0;
    const uint64_t left_out = image.left_out();
    CoreImageReader reader(std::move(segments), std::move(at->files));
    PythonStacks out = walk_python(reader, *symbols, bias, c.path, limits);
    out.source = "core";
    if (left_out > 0 && out.status == PyStatus::ok) {
      // Not known to have mattered, but said: a read past the bound would have failed.
      out.detail = std::to_string(left_out >> 20) + " MiB of the core's segments were not kept";
    }
    return out;
  }
  if (!why.empty()) {
    return failed(why);
  }
  return failed(facts.files.empty()
                    ? "the core has no NT_FILE note and no dumped ELF header of the interpreter"
                    : "the interpreter's file was not found among the core's mapped files");
}

void fit_stacks(PythonStacks& s, int64_t crashed_tid, size_t max) {
  auto size = [&] { return to_json(s).dump().size(); };
  if (size() <= max) {
    return;
  }
  size_t total = 0;
  size_t longest = 0;
  for (const auto& t : s.threads) {
    total += t.frames.size();
    longest = std::max(longest, t.frames.size());
  }
  const size_t threads = s.threads.size();
  while (size() > max && longest > 1) {
    longest /= 2;
    for (auto& t : s.threads) {
      if (t.frames.size() > longest) {
        t.frames.resize(longest);
        t.truncated = true;
      }
    }
  }
  // The crashing thread first, so that dropping from the back keeps it.
  std::ranges::stable_partition(s.threads, [&](const auto& t) {
    return static_cast<int64_t>(t.native_thread_id) == crashed_tid;
  });
  while (size() > max && s.threads.size() > 1) {
    s.threads.pop_back();
  }
  size_t kept = 0;
  for (const auto& t : s.threads) {
    kept += t.frames.size();
  }
  s.cut = "frames: " + std::to_string(kept) + " of " + std::to_string(total) +
          " kept, threads: " + std::to_string(s.threads.size()) + " of " + std::to_string(threads) +
          " kept";
  if (s.status == PyStatus::ok) {
    s.status = PyStatus::partial;
  }
}

} // namespace crash::python
