// The crashed process as the handler holds it: descriptors taken once, while the process still
// exists (before the core is drained), that every later reader of it uses instead of
// /proc/<pid> paths, which may name another process by then (pid reuse) or resolve through the
// crasher's own symbolic links.
//
// What the handle holds is the crasher's own: its /proc directory, its pidfd, its memory, its
// root and working directory, and the files it had mapped, through /proc/<pid>/map_files (the
// kernel's own references to the mapped files, whatever their paths now name). Opening those
// takes CAP_SYS_ADMIN, so the handle is taken as root; it never opens a path the crasher named.
#pragma once

#include "common/base/fd.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace handler {

// The pid a pidfd refers to, from /proc/self/fdinfo; -1 once the process is gone. Unlike a
// signal 0 through the pidfd, it works after the handler has dropped its privileges.
std::optional<int64_t> pidfd_pid(int pidfd);

class CrashedProcess {
public:
  CrashedProcess() = default;

  // Takes the handle of `pid` (through `pidfd` when the kernel gave one). An empty handle
  // (valid() false) when /proc/<pid> cannot be opened or `pidfd` names another process.
  static CrashedProcess open(int64_t pid, std::optional<int> pidfd);

  // Whether the handle was taken; once the process is gone its descriptors still work.
  bool valid() const { return static_cast<bool>(m_proc); }
  int64_t pid() const { return m_pid; }
  // /proc/<pid> (O_PATH, O_DIRECTORY): read what it holds with openat relative to it.
  int proc_dir() const { return m_proc.get(); }
  // The pidfd (the kernel's %F, or pidfd_open), -1 without one.
  int pidfd() const { return m_pidfd.get(); }
  // /proc/<pid>/mem, open for reading; -1 when it could not be opened.
  int mem() const { return m_mem.get(); }
  // The crasher's root and working directory (O_PATH); -1 when unavailable.
  int root() const { return m_root.get(); }
  int cwd() const { return m_cwd.get(); }

  // Whether the pidfd shows that the process still lives and still has pid(): what was read
  // through the handle up to now was about it (CVE-2025-4598). False without a pidfd.
  bool still_the_same() const;

  // The file mapped from file offset 0 at `start` (a module's first mapping), for reading:
  // moved out of the handle (an empty fd when none was taken or it was taken before).
  common::UniqueFd take_mapped_file(uint64_t start);
  // The same file, still held by the handle (not owned); -1 when none.
  int mapped_file(uint64_t start) const;
  // The process's /proc/<pid>/maps text as it was when the handle was taken (bounded).
  const std::string& maps() const { return m_maps; }
  // How many mapped files the handle holds.
  size_t mapped_files() const { return m_mapped.size(); }

  // Closes everything: the handle becomes empty.
  void reset() { *this = CrashedProcess(); }

private:
  void open_mapped_files();

  int64_t m_pid = 0;
  common::UniqueFd m_proc;
  common::UniqueFd m_pidfd;
  common::UniqueFd m_mem;
  common::UniqueFd m_root;
  common::UniqueFd m_cwd;
  std::map<uint64_t, common::UniqueFd> m_mapped; // by the start address of the mapping
  std::string m_maps;
};

} // namespace handler
