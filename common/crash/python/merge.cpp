// Python frames in the native backtrace.
#include "common/crash/python/merge.hpp"

#include "common/base/sha256.hpp"

#include <algorithm>

namespace crash::python {

bool is_eval_frame(const common::Frame& frame) {
  return frame.symbol && frame.symbol->name == "_PyEval_EvalFrameDefault";
}

std::vector<std::span<const PyFrame>> python_runs(const PyThread& thread) {
  std::vector<std::span<const PyFrame>> runs;
  size_t begin = 0;
  for (size_t i = 0; i < thread.frames.size(); ++i) {
    if (thread.frames[i].entry || i + 1 == thread.frames.size()) {
      runs.emplace_back(thread.frames.data() + begin, i + 1 - begin);
      begin = i + 1;
    }
  }
  return runs;
}

std::vector<MergedFrame> merge_python_frames(std::span<const common::Frame> native,
                                             const PyThread& thread) {
  const std::vector<std::span<const PyFrame>> runs = python_runs(thread);
  std::vector<MergedFrame> out;
  out.reserve(native.size() + thread.frames.size());
  size_t run = 0;
  for (const common::Frame& f : native) {
    out.push_back({&f, nullptr});
    if (is_eval_frame(f) && !f.inlined && run < runs.size()) {
      for (const PyFrame& p : runs[run]) {
        out.push_back({nullptr, &p});
      }
      ++run;
    }
  }
  for (; run < runs.size(); ++run) {
    for (const PyFrame& p : runs[run]) {
      out.push_back({nullptr, &p});
    }
  }
  return out;
}

std::optional<std::string> signature_python_frame(const PyThread& thread) {
  if (thread.frames.empty()) {
    return std::nullopt;
  }
  // The standard library's own Python wrappers (ctypes.string_at over _string_at) are the
  // same for every caller: the innermost frame outside it names the code that crashed.
  const auto stdlib = [](const PyFrame& f) {
    return f.file.find("/lib/python") != std::string::npos &&
           f.file.find("-packages/") == std::string::npos;
  };
  const auto it = std::ranges::find_if_not(thread.frames, stdlib);
  const PyFrame& top = it != thread.frames.end() ? *it : thread.frames.front();
  return top.file + ":" + top.function;
}

std::optional<common::SignatureV2> signature_v3(const common::SignatureV2& v2,
                                                std::span<const common::Frame> native,
                                                const PythonStacks& stacks, int64_t tid) {
  const PyThread* thread = thread_for_tid(stacks, tid);
  if (thread == nullptr || !std::ranges::any_of(native, is_eval_frame) ||
      !v2.input.starts_with("v2|")) {
    return std::nullopt;
  }
  const auto top = signature_python_frame(*thread);
  if (!top) {
    return std::nullopt;
  }
  common::SignatureV2 v3 = v2;
  v3.version = 3;
  v3.refines = v2.signature;
  v3.input = "v3|" + v2.input.substr(3) + "|py:" + *top;
  v3.signature = common::sha256_hex(v3.input, 16);
  v3.chain.push_back(*top);
  return v3;
}

const PyThread* thread_for_tid(const PythonStacks& stacks, int64_t tid) {
  for (const PyThread& t : stacks.threads) {
    if (static_cast<int64_t>(t.native_thread_id) == tid) {
      return &t;
    }
  }
  return nullptr;
}

} // namespace crash::python
