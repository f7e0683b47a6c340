#include "cli/verbs/loose_core.hpp"

#include "common/base/escape.hpp"
#include "common/base/signals.hpp"
#include "common/crash/analysis.hpp"
#include "common/crash/analysis_wire.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/elf_core.hpp"
#include "common/crash/symbolize.hpp"
#include "common/crash/unwind.hpp"
#include "common/sandbox/analysis_child.hpp"
#include "common/store/record.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <span>
#include <vector>

namespace cli {

namespace {

// Time the analysing child has after the unwinder's deadline to send what it found.
constexpr auto k_child_grace = std::chrono::milliseconds(500);

// The record a loose core gives: what the core itself says (no hostname, no handler), the file
// as its core.
FullRecord to_record(const common::CoreFacts& f, const std::string& path, const struct stat& st) {
  const auto size = static_cast<uint64_t>(st.st_size);
  FullRecord full;
  common::Record& r = full.record;
  r.time = common::format_time(static_cast<int64_t>(st.st_mtime)); // the file's, not the crash's
  r.executable = common::to_valid_utf8(common::executable_mapping(f));
  if (r.executable.empty()) {
    r.executable = common::to_valid_utf8(f.fname);
  }
  r.signal = f.si_signo.value_or(f.cursig.value_or(0));
  r.signal_name = r.signal > 0 ? common::signal_name(r.signal) : "";
  r.pid = f.pid;
  r.tid = f.tid;
  if (f.uid) {
    r.uid = static_cast<int64_t>(*f.uid);
  }
  if (f.gid) {
    r.gid = static_cast<int64_t>(*f.gid);
  }
  r.comm = common::to_valid_utf8(f.fname);
  r.cmdline = common::to_valid_utf8(f.psargs);
  r.core.present = true;
  r.core.reason = !f.is_elf     ? common::CoreReason::not_elf
                  : f.truncated ? common::CoreReason::truncated
                                : common::CoreReason::stored;
  r.core.truncated = f.truncated;
  r.core.size = size;
  r.core.stored_size = size;
  if (f.expected_size > 0) {
    r.core.expected_size = f.expected_size;
  }
  r.core.compression = "none";
  r.core.access = common::CoreAccess::owner;
  r.core.path = path;
  if (!f.format_error.empty()) {
    r.handler.warnings.push_back("core: " + f.format_error);
  }
  for (const auto& w : f.warnings) {
    r.handler.warnings.push_back("core: " + w);
  }
  return full;
}

// Every thread unwound, in the handler's sandboxed child (common/sandbox): libdw parses the
// core's and the module files' bytes there, with nothing but their descriptors, under hard
// limits, and as a uid that owns nothing when root runs corectl. The files are opened here, with
// the caller's rights, as the handler opens them when the crashed process is gone. On any
// failure the record keeps the crash site of the notes and says why.
common::CrashAnalysis analyse_in_child(const common::CoreFacts& facts, common::Record& r) {
  const auto kill_at = std::chrono::steady_clock::now() +
                       std::chrono::seconds(k_loose_analysis_seconds) + k_child_grace;
  common::UnwindOptions unwind;
  unwind.deadline = kill_at - k_child_grace;
  const common::AnalysisFiles files = common::open_analysis_files(facts, unwind, {});
  unwind.files = &files;
  const std::vector<int> keep = files.fds();
  sandbox::ChildLimits limits;
  limits.cpu_seconds = k_loose_analysis_seconds + 1;
  limits.files += keep.size();
  limits.max_output = common::k_record_max;
  const sandbox::ChildResult child = sandbox::run_in_child(
      [&] {
        return common::analysis_to_wire(common::analyze_crash(facts, unwind), limits.max_output);
      },
      keep, limits, kill_at, -1, /*drop_root=*/true);
  std::string failure = child.failure;
  if (child.output) {
    auto wire = common::analysis_from_wire(*child.output, limits.max_output);
    if (wire) {
      r.handler.analysis = "ok";
      return std::move(wire->analysis);
    }
    failure = wire.error().message;
  }
  r.handler.analysis = failure;
  r.handler.warnings.push_back("crash analysis failed (" + failure +
                               "), continuing with the crash site from the core's notes");
  return {};
}

} // namespace

std::expected<LooseCore, Exit> open_loose_core(const std::string& path, bool analyse) {
  // O_NONBLOCK: a FIFO at the path is opened without waiting for a writer, then refused.
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    const int err = errno;
    return std::unexpected(
        report(err == EACCES || err == EPERM ? Exit::denied : Exit::failure,
               "Failed to open " + common::quoted(path) + ": " + std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::unexpected(
        report(Exit::usage, common::quoted(path) + " is not a regular file (--file takes a core)"));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return std::unexpected(report(Exit::failure, "Failed to read " + common::quoted(path)));
  }
  std::array<unsigned char, 4> magic{};
  const ssize_t m = ::pread(fd.get(), magic.data(), magic.size(), 0);
  if (m == 4 && magic == std::array<unsigned char, 4>{0x28, 0xb5, 0x2f, 0xfd}) {
    return std::unexpected(report(Exit::usage, common::quoted(path) +
                                                   " is zstd-compressed (a stored core): give its "
                                                   "id instead, or decompress it (zstd -d)"));
  }
  if (m != 4 || magic != std::array<unsigned char, 4>{0x7f, 'E', 'L', 'F'}) {
    return std::unexpected(report(Exit::failure, common::quoted(path) + " is not an ELF core"));
  }
  LooseCore core{std::move(fd), path, {}};
  if (!analyse) {
    return core;
  }
  // The scanner in stream order, as the handler feeds it from the kernel's pipe; it stops
  // wanting bytes once the notes and stacks are read, so a large core is not read to its end.
  common::CoreScanner scanner;
  std::vector<std::byte> buf(1 << 16);
  while (scanner.wants_more()) {
    const ssize_t n = ::read(core.fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return std::unexpected(report(Exit::failure, "Failed to read " + common::quoted(path) + ": " +
                                                       std::strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    scanner.observe(std::span(buf).first(static_cast<size_t>(n)));
  }
  scanner.finish();
  const common::CoreFacts& facts = scanner.facts();
  if (!facts.is_elf) {
    return std::unexpected(report(Exit::failure, common::quoted(path) + " is not an ELF core"));
  }
  core.full = to_record(facts, path, st);
  common::Record& r = core.full.record;
  const common::CrashAnalysis analysis = analyse_in_child(facts, r);
  r.crash = common::crash_to_json(facts, analysis);
  r.mappings = common::mappings_to_json(
      facts, common::check_mapped_files(facts.files, facts.build_ids, std::nullopt));
  core.full.json = common::to_json(r);
  if (::lseek(core.fd.get(), 0, SEEK_SET) != 0) {
    return std::unexpected(report(Exit::failure, "Failed to read " + common::quoted(path)));
  }
  return core;
}

} // namespace cli
