// Step 7 of the handler: the policy's decision, then the core streamed from stdin through the
// scanner and zstd into the store, and committed.
#include "common/base/atomic_file.hpp"
#include "common/crash/capture.hpp"
#include "common/store/names.hpp"
#include "handler/admission.hpp"
#include "handler/context.hpp"
#include "handler/policy.hpp"
#include "handler/python_walk.hpp"
#include "handler/steps.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>

namespace handler {

namespace {

using common::CoreReason;

// How far the scanner may read past a small max_core_size for the notes and the first build-ids.
constexpr uint64_t k_min_observed = 32ULL << 20;

// The Python stacks, once: the kernel is still blocked on the pipe, so the process exists.
void read_python_stacks(Context& ctx) {
  if (ctx.python_walked) {
    return;
  }
  ctx.python_walked = true;
  if (!ctx.config.python_stacks || (ctx.running_as_root && !ctx.python_launcher)) {
    return; // no launcher (or no CPython mapped): the walk never runs as the store user
  }
  const auto tid = ctx.scanner.facts().tid ? ctx.scanner.facts().tid : ctx.record.tid;
  if (ctx.python_walk) {
    ctx.record.python = ctx.python_walk->finish(tid); // started in step 6
    ctx.python_walk.reset();
  } else if (auto section = walk_python_stacks(ctx.crashed, ctx.python_launcher.get(), tid)) {
    ctx.record.python = std::move(*section);
  }
  ctx.python_launcher.reset(); // it answers once
}

// The scanner, and the Python walk as soon as the core's notes (NT_FILE comes with the first
// thread's) have passed: the stream waits for it, the kernel with it.
class ScanAndWalk final : public common::StreamObserver {
public:
  explicit ScanAndWalk(Context& ctx) : m_ctx(ctx) {}
  void observe(std::span<const std::byte> chunk) override {
    m_ctx.scanner.observe(chunk);
    if (!m_ctx.python_walked && !m_ctx.scanner.facts().files.empty()) {
      read_python_stacks(m_ctx);
    }
  }
  bool wants_more() const override { return m_ctx.scanner.wants_more(); }

private:
  Context& m_ctx;
};

// Step 7's stream: stdin → scanner and zstd → temp file → commit.
void stream_core(Context& ctx) {
  common::CoreInfo& core = ctx.record.core;
  if (ctx.lean) {
    // The pipe is still open only for a Python process: its stacks first, then the kernel goes.
    if (ctx.input) {
      read_python_stacks(ctx);
      ctx.input.reset();
    }
    core.present = false;
    core.reason = CoreReason::busy;
    core.error = ctx.lean_reason + ": recorded without reading the core";
    return;
  }
  CoreBudget budget;
  if (ctx.exe_dir) {
    budget = decide_with_reservation(ctx);
    ctx.record_size = budget.record;
    const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    if (!ctx.config.honour_rlimit_core && ctx.args.rlimit && *ctx.args.rlimit < page) {
      ctx.warnings.push_back("RLIMIT_CORE is " + std::to_string(*ctx.args.rlimit) +
                             ": not honoured (honour_rlimit_core = no), the core is kept");
    }
  } else {
    budget.store = false;
    budget.reason = CoreReason::error;
    budget.detail = ctx.store_error;
  }

  std::optional<common::AtomicFile> file;
  const std::string core_name = ctx.record.id + std::string(common::k_core_suffix);
  if (budget.store) {
    auto f = common::AtomicFile::create(ctx.exe_dir.get(), core_name, common::k_core_mode);
    if (!f) {
      budget.store = false;
      budget.reason = f.error().sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
      budget.detail = f.error().message;
    } else {
      file.emplace(std::move(*f));
    }
  }

  common::CaptureOptions options;
  options.level = ctx.config.compression_level;
  options.workers = ctx.config.compression_threads;
  options.max_raw = budget.max_raw;
  options.max_stored = budget.max_stored;
  options.min_free = budget.keep_free;
  // The notes (registers, signal, mapped files) lie right after the headers and stay within the
  // scanner's 32 MiB buffer budget: read that far whatever the cap, never the rest.
  options.min_observed = k_min_observed;
  // From the start of the run, so that whatever came before (the /proc reads, a walk of the
  // store) counts against the same bound.
  options.deadline = ctx.started + std::chrono::seconds(ctx.config.capture_timeout);
  common::CaptureResult result;
  if (ctx.input) {
    ScanAndWalk observer(ctx);
    result = common::capture_stream(ctx.input.get(), file ? file->fd() : -1, options, &observer);
  } else {
    result.error = "no input: stdin is closed";
    result.read_failed = true;
  }
  // The stream is over: close the pipe now, before fsync and analysis, so that with
  // core_pipe_limit > 0 the kernel releases the crashed process (and its memory) at once.
  ctx.input.reset();
  ctx.record.handler.drained_ms = elapsed_ms(ctx.started);
  ctx.scanner.finish();
  const common::CoreFacts& facts = ctx.scanner.facts();
  core.size = result.received;
  if (facts.is_elf && facts.expected_size > 0) {
    core.expected_size = facts.expected_size;
  }

  if (result.received == 0) {
    // Nothing to keep (the file, if any, is discarded with `file`).
    core.present = false;
    core.reason = result.read_failed || result.stop == common::CaptureStop::deadline
                      ? CoreReason::error
                      : CoreReason::empty;
    core.error =
        result.stop == common::CaptureStop::deadline
            ? "no data before capture_timeout (" + seconds_text(ctx.config.capture_timeout) + ")"
            : result.error;
    return;
  }
  if (!file) {
    core.present = false;
    core.reason = budget.reason;
    core.error = budget.detail;
    return;
  }
  if (result.stop == common::CaptureStop::failed) {
    core.present = false;
    core.reason = result.sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
    core.error = result.error + ", continuing without core";
    return;
  }
  if (auto r = file->commit(); !r) {
    core.present = false;
    core.reason = r.error().sys_errno == ENOSPC ? CoreReason::disk_full : CoreReason::error;
    core.error = r.error().message + ", continuing without core";
    return;
  }
  ctx.store->add_usage(result.stored_size);
  core.present = true;
  core.path = common::core_relpath(ctx.record.store_host, ctx.record.store_exe, ctx.record.id);
  core.stored_size = result.stored_size;
  // We stopped reading before the end (at a limit or the deadline): the core is a prefix.
  const bool cut_by_us = !result.complete && !result.read_failed;
  // The kernel sends no trailer: a core that ends before its last PT_LOAD was cut short on the
  // way (the process was killed mid-dump, or a helper before us in a chain gave up).
  const bool cut_short = facts.is_elf && facts.truncated;
  core.truncated = cut_by_us || cut_short || result.read_failed;
  if (!facts.is_elf) {
    core.reason = CoreReason::not_elf;
  } else if (core.truncated) {
    core.reason = CoreReason::truncated;
  } else {
    core.reason = CoreReason::stored;
  }
  if (cut_by_us) {
    switch (result.stop) {
    case common::CaptureStop::max_stored:
      core.error = budget.detail;
      break;
    case common::CaptureStop::deadline:
      core.error = "cut at capture_timeout (" + seconds_text(ctx.config.capture_timeout) + ")";
      break;
    default:
      core.error = "cut at max_core_size";
      break;
    }
  } else if (result.read_failed) {
    core.error = result.error;
  } else if (cut_short) {
    core.error = "the core stream ended after " + std::to_string(result.received) + " of " +
                 std::to_string(facts.expected_size) + " bytes";
  }
}

} // namespace

// 7. Capture: the core streamed (above), then the record's size and the reservation settled.
void capture_core(Context& ctx) {
  stream_core(ctx);
  if (record_size_for(ctx.record.core) == RecordSize::minimal) {
    ctx.record_size = RecordSize::minimal;
  }
  // An abandoned core releases its place at once. A committed one keeps its reservation until
  // the record is written: until then only the reservation says whose core it is.
  if (ctx.reservation && !ctx.record.core.present) {
    release_reservation(ctx.exe_dir.get(), ctx.record.id, std::move(ctx.reservation));
  }
}

} // namespace handler
