// Step 8 of the handler: what the core's notes say, and every thread unwound and symbolized in
// the analysis child.
#include "common/base/escape.hpp"
#include "common/base/signals.hpp"
#include "common/crash/analysis.hpp"
#include "common/crash/analysis_wire.hpp"
#include "common/crash/crash_json.hpp"
#include "common/crash/python/merge.hpp"
#include "common/crash/python/stacks.hpp"
#include "common/crash/symbolize.hpp"
#include "common/packages/dpkg_index.hpp"
#include "common/packages/owner_json.hpp"
#include "common/packages/ownership.hpp"
#include "common/sandbox/analysis_child.hpp"
#include "handler/context.hpp"
#include "handler/runtime_report.hpp"
#include "handler/steps.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>

namespace handler {

namespace {

// Unwinding and symbolizing every thread, after the core is committed and the crashed process
// released; what is not done by then is left out of the record (the threads keep frame #0).
constexpr auto k_analysis_budget = std::chrono::seconds(2);
// The Python frames' files (duplicates counted) whose owners are looked up with the mappings'.
constexpr size_t k_max_python_files = 512;
// The analysis child's time to send its result after the unwinder's deadline, and what is kept
// of analysis_timeout for the mapped files and the record after the child is gone.
constexpr auto k_child_grace = std::chrono::milliseconds(500);
constexpr auto k_record_reserve = std::chrono::milliseconds(250);

// Threads in the core carry tids of the crasher's pid namespace, like /proc/<pid>/task seen
// through its pidfd: names and states are matched by tid.
void attach_thread_names(std::vector<common::ThreadTrace>& stacks,
                         const std::vector<ThreadInfo>& threads) {
  for (auto& t : stacks) {
    for (const auto& info : threads) {
      if (info.tid == t.tid) {
        t.name = info.name;
        t.state = info.state;
        break;
      }
    }
  }
}

// Every thread unwound with the module files' CFI, symbols and lines, signature v2 — in a
// forked child under hard limits (common/sandbox/analysis_child): libdw and libelf may exit or
// crash on hostile module files or out of memory, and the record must not go with them. The child
// works on the scanner's facts as they are in memory (shared copy-on-write) and sends the analysis
// back over a pipe; on any failure the record keeps the scanner's crash site and v1 signature,
// and handler.analysis says why.
common::CrashAnalysis analyze_in_child(Context& ctx, int root) {
  const common::CoreFacts& facts = ctx.scanner.facts();
  const auto now = std::chrono::steady_clock::now();
  // The child's whole life fits in analysis_timeout, leaving time for the mapped files and the
  // record; the unwinder stops a little before the child is killed, to send what it has.
  const auto window = std::min<std::chrono::milliseconds>(
      k_analysis_budget + k_child_grace,
      std::chrono::seconds(ctx.config.analysis_timeout) - k_record_reserve);
  const auto kill_at = now + window;
  common::UnwindOptions unwind;
  unwind.root_fd = root;
  unwind.perf_map = ctx.perf_map;
  unwind.deadline = kill_at - std::min<std::chrono::milliseconds>(k_child_grace, window / 3);
  sandbox::ChildLimits limits;
  limits.memory = ctx.config.analysis_memory_limit;
  limits.cpu_seconds =
      static_cast<unsigned>(std::chrono::ceil<std::chrono::seconds>(window).count()) + 1;
  // The Python stacks read during the stream keep their share of the record.
  limits.max_output =
      common::k_record_max -
      std::min(ctx.record.python.empty() ? size_t{0} : ctx.record.python.dump().size(),
               common::k_record_max / 2);
  // Opened here, before the fork: the child opens nothing (common/sandbox/analysis_sandbox).
  // Module files through the handle's map_files (the files the process had mapped, whatever
  // their paths name now); by path only when there is no handle (the process was gone).
  common::ModuleOpener from_handle;
  if (ctx.crashed.valid()) {
    from_handle = [&](const common::FileMapping& m) {
      return ctx.crashed.take_mapped_file(m.start);
    };
  }
  const common::AnalysisFiles files = common::open_analysis_files(facts, unwind, from_handle);
  unwind.files = &files;
  const std::vector<int> keep = files.fds();
  limits.files += keep.size(); // the descriptors it is handed come on top
  const sandbox::ChildResult child = sandbox::run_in_child(
      [&] {
        return common::analysis_to_wire(common::analyze_crash(facts, unwind), limits.max_output);
      },
      keep, limits, kill_at, ctx.analysis_launcher.get());
  ctx.analysis_launcher.reset(); // it answers once
  common::Record& r = ctx.record;
  std::string failure = child.failure;
  if (child.output) {
    auto wire = common::analysis_from_wire(*child.output, limits.max_output);
    if (wire) {
      r.handler.analysis = "ok";
      if (!wire->cut.empty()) {
        ctx.warnings.push_back("backtraces cut to fit the record: " + wire->cut);
      }
      return std::move(wire->analysis);
    }
    failure = wire.error().message;
  }
  r.handler.analysis = failure;
  ctx.warnings.push_back("crash analysis failed (" + failure +
                         "), continuing with the crash site from the core's notes");
  return {};
}

} // namespace

// 8. What the notes say: fill what the arguments did not give, the setuid policy, the crash
// site with its symbol, and findings about the mapped files.
void analyze_crash(Context& ctx) {
  const common::CoreFacts& facts = ctx.scanner.facts();
  common::Record& r = ctx.record;
  if (!facts.is_elf) {
    // No auxv either (nothing was read, or it is not a core): nothing shows the process changed
    // no privileges, so the crash stays root's.
    r.core.access = common::CoreAccess::root_only;
    return;
  }
  // The minimal pattern (%h %s %E) gives no pid, uid, gid: NT_PRPSINFO has them. Note that
  // they are in the crasher's own namespaces, unlike %P/%u/%g.
  if (!r.pid && facts.pid) {
    r.pid = facts.pid;
  }
  if (!r.tid && facts.tid) {
    r.tid = facts.tid;
  }
  if (!r.uid && facts.uid) {
    r.uid = *facts.uid;
  }
  if (!r.gid && facts.gid) {
    r.gid = *facts.gid;
  }
  if (r.comm.empty()) {
    r.comm = facts.fname;
  }
  if (r.cmdline.empty()) {
    r.cmdline = facts.psargs;
  }
  if (r.signal == 0 && (facts.si_signo || facts.cursig)) {
    r.signal = facts.si_signo.value_or(facts.cursig.value_or(0));
    r.signal_name = common::signal_name(r.signal);
  }
  // A core may be given to its user only when the core shows the process held no more
  // privileges than that user: dump mode 1, and an auxv with no AT_SECURE and real ids equal to
  // effective ids (CVE-2022-4415 was a setuid core handed to its user).
  // A core without an auxv (cut before it, or never written) proves nothing: root only.
  const bool auxv_clean = facts.at_secure && facts.at_uid && facts.at_euid && facts.at_gid &&
                          facts.at_egid && *facts.at_secure == 0 &&
                          *facts.at_uid == *facts.at_euid && *facts.at_gid == *facts.at_egid;
  r.core.access =
      r.dump_mode == 1 && auxv_clean ? common::CoreAccess::owner : common::CoreAccess::root_only;
  if (ctx.record_size == RecordSize::minimal) {
    // The store has no room: the backtraces and mapped files would only be cut away again.
    r.handler.analysis = "skipped: minimal record";
    return;
  }

  const int root = ctx.crashed.root();
  // JIT code in the core: the names of its frames come from the perf map read as the crashing
  // user during the stream (usually long done by now).
  if (!facts.anonymous_code.empty()) {
    take_perf_map(ctx);
  }
  const auto analysis_start = std::chrono::steady_clock::now();
  common::CrashAnalysis analysis = analyze_in_child(ctx, root);
  r.handler.analysis_ms = elapsed_ms(analysis_start);
  attach_thread_names(analysis.stacks, ctx.proc.threads);
  std::optional<std::chrono::system_clock::time_point> started;
  if (ctx.proc.start_time) {
    started = std::chrono::system_clock::from_time_t(static_cast<time_t>(*ctx.proc.start_time));
  }
  // NT_FILE paths are the crasher's: looked up anywhere but in its own root (a container's
  // image) they name unrelated files, and "missing" or "replaced" would be false alarms. Symbols
  // are still looked up, since a build-id mismatch rejects a wrong file.
  std::vector<common::MappingFinding> findings;
  if (root >= 0) {
    findings = common::check_mapped_files(facts.files, facts.build_ids, started, root);
  } else if (!facts.files.empty()) {
    ctx.warnings.push_back("mapped files not checked: the crashed process's root could not be "
                           "verified (no -P%P -F%F, or it exited too early)");
  }
  // Signature v3: the Python caller of a native crash, from the stacks read during the stream.
  if (analysis.signature && !r.python.empty()) {
    const auto py = crash::python::python_stacks_from_json(r.python);
    for (const auto& t : analysis.stacks) {
      if (t.crashing) {
        if (auto v3 = crash::python::signature_v3(*analysis.signature, t.frames, py, t.tid)) {
          analysis.signature = std::move(*v3);
        }
      }
    }
  }
  r.crash = common::crash_to_json(facts, analysis);
  r.mappings = common::mappings_to_json(facts, findings);
  // The packages behind the mapped files and the Python frames' files, from the databases of
  // the crashed root (the host's or a container's). Here, after the drain, the kernel and the
  // crashed process wait for none of it; the lookup has its own time and byte budget
  // (common/packages/ownership).
  if (root >= 0 && !facts.files.empty()) {
    std::vector<std::string> paths;
    paths.reserve(facts.files.size());
    for (const auto& f : facts.files) {
      paths.push_back(f.path);
    }
    // After the mappings, so that a deep Python stack never displaces a module from the lookup's
    // path bound; a relative co_filename names nothing in the root.
    if (!r.python.empty()) {
      size_t added = 0;
      for (const auto& t : crash::python::python_stacks_from_json(r.python).threads) {
        for (const auto& f : t.frames) {
          if (f.file.starts_with('/') && added < k_max_python_files) {
            paths.push_back(f.file);
            ++added;
          }
        }
      }
    }
    // dpkg's database is indexed between crashes in the store user's own directory
    // (common/packages/dpkg_index), which nothing the crashed process controls can write: an
    // index is keyed by its root and database state, and checked whole before it is believed.
    common::UniqueFd index_dir;
    if (ctx.store && ctx.store_error.empty()) {
      if (auto dir = common::open_dpkg_index_dir(ctx.store->fd())) {
        index_dir = std::move(*dir);
      } else {
        ctx.warnings.push_back("packages looked up without the dpkg index: " + dir.error().message);
      }
    }
    r.packages = common::to_json(common::find_owners(root, paths, {}, index_dir.get()));
  }
  for (const auto& f : findings) {
    ctx.warnings.push_back("mapped file " + common::to_valid_utf8(f.path) + " " +
                           std::string(common::to_string(f.kind)) +
                           (f.detail.empty() ? "" : ": " + common::to_valid_utf8(f.detail)));
  }
}

} // namespace handler
