// The analysis child's sandbox: what remains of its authority once the analysis starts. It runs
// the crasher's module files and separate debug files through libdw and libelf, which a hostile
// file may drive into running its code: that code must find nothing to reach.
//
// Two steps, because a pid namespace takes effect for children only. In the forked child,
// isolate() moves it into new user, mount, network, pid, IPC and UTS namespaces; the child then
// forks the process that analyses, pid 1 of the new pid namespace, so that everything it may
// leave dies with it. That process calls confine(): an empty tmpfs as its root, no capabilities
// in any namespace, no new privileges, RLIMIT_NPROC 0 and a seccomp allow-list (reads and
// seeks of the descriptors it holds, memory, time, reading its own ids, writes to its result
// pipe only, a memfd for debug files, exit). Denied system calls fail with EPERM. Between the
// two, the child takes its own uid (analysis_launcher.hpp): `user` when that failed.
#pragma once

#include <string>
#include <string_view>

namespace sandbox {

// The step of the sandbox that failed; none when all held.
enum class SandboxFailure { none, namespaces, root, credentials, seccomp, user };

// What handler.analysis says when `step` failed (docs/record.md).
std::string describe(SandboxFailure step);

// In the forked child, single-threaded: unshares the namespaces.
SandboxFailure isolate();

// In the process that analyses (pid 1 of the new pid namespace), after it holds only the
// descriptors it needs: the rest of the sandbox. `result_fd` is the one descriptor it may write.
SandboxFailure confine(int result_fd);

} // namespace sandbox
