// The analysis child's own uid. The handler gives root up for the store user early, and the
// analysis child it forks later must not run as that user, who owns every core in the store.
// Before the drop, the handler forks a tiny root launcher that waits on a socket. The analysis
// child, once in its new user namespace (analysis_sandbox.hpp: isolate), sends the launcher one
// message; the launcher checks, by the kernel's credentials on that message and by /proc, that
// the sender is the handler's own child in a user namespace of its own, and writes that
// namespace's uid_map and gid_map: one id each, the analysis ids, mapped to themselves. The child
// then takes them (setgroups, setresgid, setresuid, verified) before anything parses. The
// launcher never sees crash data, answers once and dies with the handler.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"
#include "common/sandbox/analysis_sandbox.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace sandbox {

// The dedicated analysis uid and gid, for crashes of root, of system users and of the store
// user: in Debian's reserved range (65000-65533, allocated to nothing), so it owns no file, unlike
// nobody, which NFS root squashing gives files and which the store user falls back to.
constexpr uid_t k_analysis_uid = 65533;
constexpr gid_t k_analysis_gid = 65533;

struct AnalysisIds {
  uid_t uid;
  gid_t gid;
};

// Who the analysis runs as: the crashing uid (%u) when it is an ordinary user's (1000 or above,
// not nobody, not the store user), otherwise k_analysis_uid; the gid (%g) likewise.
AnalysisIds analysis_ids(std::optional<int64_t> crash_uid, std::optional<int64_t> crash_gid,
                         uid_t store_uid, gid_t store_gid);

// As root: forks the launcher for `ids` and returns the handler's end of its socket, which the
// analysis child inherits (run_in_child's `launcher`). Closing it ends the launcher.
common::Expected<common::UniqueFd> start_analysis_launcher(AnalysisIds ids);

// In the analysis child, after isolate() and before it forks: asks the launcher behind
// `launcher` for its ids and takes them (credentials failure when anything is refused).
SandboxFailure take_analysis_ids(int launcher);

// Takes `ids` (setgroups, setresgid, setresuid, each verified) and clears the dumpable flag
// again; user failure when anything is refused. As root, or in a user namespace that maps them.
SandboxFailure become(AnalysisIds ids);

// After become(ids) and isolate(), in the new user namespace: maps `ids` to themselves, the one
// mapping an unprivileged process may write for itself, so that the ids read there are the real
// ones rather than the overflow id.
SandboxFailure map_self(AnalysisIds ids);

} // namespace sandbox
