// The private directory `corectl debug` hands the debugger: the decompressed core, and a sysroot
// holding copies of the module files the record's mappings name, each kept only when it carries
// the build-id the core saw.
//
// The crasher chooses the paths in its core (NT_FILE, the link map in its memory) and can put a
// FIFO, a device or another file at them after the crash. A debugger pointed at the private
// sysroot (`set sysroot`) opens only regular files we copied and checked; everything else it
// does not find, and it never waits on a FIFO.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace cli {

// The user the debugger runs as when it is not the invoking one.
struct DebugUser {
  uid_t uid = 0;
  gid_t gid = 0;
};

// A directory made with mkdtemp (0700) under `base`, handed to `owner` when given. The
// destructor removes it with everything in it, never following a link, and so does a fatal
// signal (SIGTERM, SIGHUP, SIGINT, SIGQUIT) while it exists. One at a time per process.
class DebugDir {
public:
  // Makes the directory; an error says why, with its path.
  static common::Expected<DebugDir> create(const std::string& base, std::optional<DebugUser> owner);
  DebugDir(DebugDir&& other) noexcept;
  DebugDir& operator=(DebugDir&&) = delete;
  DebugDir(const DebugDir&) = delete;
  DebugDir& operator=(const DebugDir&) = delete;
  ~DebugDir();

  // Its absolute path and an open descriptor of it.
  const std::string& path() const { return m_path; }
  int fd() const { return m_dir.get(); }

private:
  DebugDir(common::UniqueFd parent, common::UniqueFd dir, std::string path, std::string name);

  common::UniqueFd m_parent;
  common::UniqueFd m_dir;
  std::string m_path;
  std::string m_name;
};

// Drops every privilege to `user` (supplementary groups, gid, uid); an error says which step.
common::Expected<void> become(const DebugUser& user);

// The sysroot directory's name inside a DebugDir.
inline constexpr std::string_view k_sysroot = "sysroot";

// Whether a copy must carry a known build-id.
enum class Verify { build_id, none };

// Copies the file open as `src` to <dir>/sysroot/<path> (`path` absolute, without "." or ".."
// components) and returns the copy's absolute path. With Verify::build_id the copy must carry
// `build_id`, else it is removed and the error says so.
common::Expected<std::string> add_to_sysroot(const DebugDir& dir, const std::string& path, int src,
                                             std::string_view build_id, Verify verify);

// Opens `path` as a module file (regular, local, no FIFO or device, last component not a link)
// and copies it with add_to_sysroot(). The error says why it was left out.
common::Expected<std::string> copy_module(const DebugDir& dir, const std::string& path,
                                          std::string_view build_id, Verify verify);

// Copies every file of the record's `mappings` that has a build-id into the sysroot (see
// add_to_sysroot), at most `k_max_sysroot_bytes` in all; says on stderr which ones it left out.
// Returns the paths copied (as the mappings name them).
std::set<std::string> fill_sysroot(const DebugDir& dir, const nlohmann::json& mappings);

// Gives the copies the other names the dynamic linker may have used for them (what the core's
// link map holds): root's relative links of "/" (lib -> usr/lib), and links beside each copied
// file that lead to it (libc.so.6 -> libc-2.36.so). Each alias is a link to the copy, never to
// the file system outside. Returns the number of aliases made.
size_t add_aliases(const DebugDir& dir, const std::set<std::string>& copied);

// Bound on the links add_aliases() takes from one directory.
inline constexpr size_t k_max_aliases = 4096;

// Bound on what fill_sysroot() copies, all files together.
inline constexpr uint64_t k_max_sysroot_bytes = 4ULL << 30;

} // namespace cli
