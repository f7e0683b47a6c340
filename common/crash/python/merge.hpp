// One backtrace per thread: its Python frames merged into its native frames at the
// _PyEval_EvalFrameDefault frames (the rule gdb's py-bt follows), and the top Python frame a
// signature names.
#pragma once

#include "common/crash/python/stacks.hpp"
#include "common/crash/signature.hpp"
#include "common/crash/unwind.hpp"

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace crash::python {

// One line of the merged backtrace: a native frame, or a Python frame shown after the
// evaluation-loop frame that ran it.
struct MergedFrame {
  const common::Frame* native = nullptr;
  const PyFrame* python = nullptr;
};

// True for a native frame of the evaluation loop (_PyEval_EvalFrameDefault).
bool is_eval_frame(const common::Frame& frame);

// `thread`'s frames cut into the runs of one evaluation-loop call each: innermost first, each
// ending at (and including) an entry frame.
std::vector<std::span<const PyFrame>> python_runs(const PyThread& thread);

// `native` innermost first, with `thread`'s Python frames after the evaluation-loop frames:
// each call of the loop ran the Python frames from one entry frame inwards, so the innermost
// loop frame gets the innermost run, the next one the next run, and so on. Runs left over when
// the native trace ended early come last; loop frames left over get none.
std::vector<MergedFrame> merge_python_frames(std::span<const common::Frame> native,
                                             const PyThread& thread);

// The Python frame a signature names ("file:function", no line) when the crash happened in
// native code called from Python: `thread`'s innermost frame outside the standard library
// (a file under .../lib/python3.N/ but not in site- or dist-packages), else its innermost one;
// nullopt for a thread without frames.
std::optional<std::string> signature_python_frame(const PyThread& thread);

// Signature v3: `v2` with the top Python frame of the crashing thread (`tid`, its native
// frames `native`) when those native frames were called from Python (they reach the evaluation
// loop); nullopt otherwise, and v2 stands. Input "v3|<v2's fields>|py:<file>:<function>".
std::optional<common::SignatureV2> signature_v3(const common::SignatureV2& v2,
                                                std::span<const common::Frame> native,
                                                const PythonStacks& stacks, int64_t tid);

// The thread state of the kernel thread `tid`; nullptr when none.
const PyThread* thread_for_tid(const PythonStacks& stacks, int64_t tid);

} // namespace crash::python
