// Read and write helpers that handle EINTR and short counts.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace common {

// Writes all of `data` to `fd`, retrying on EINTR and short writes.
Expected<void> write_all(int fd, std::span<const std::byte> data);
Expected<void> write_all(int fd, std::string_view data);

// Reads up to buf.size() bytes; returns the count, 0 only at end of input.
Expected<size_t> read_some(int fd, std::span<std::byte> buf);

// Fills `buf` as far as input allows; returns the count (< size only at end of input).
Expected<size_t> read_full(int fd, std::span<std::byte> buf);

// Fills `out` from `offset` of `fd` (pread; EINTR retried). An error with the read's errno, or
// with errno 0 when the file ends first or the range does not fit an off_t.
Expected<void> read_exact_at(int fd, std::span<std::byte> out, uint64_t offset);

// Writes all of `data` at `offset` of `fd` (pwrite; EINTR and short writes retried).
Expected<void> write_all_at(int fd, std::span<const std::byte> data, uint64_t offset);

// Reads from `fd` to end of input, at most `limit` bytes; `path` names it in messages. More
// input than `limit` is an error with errno 0 (every other error keeps the errno of the read).
Expected<std::string> read_fd(int fd, const std::string& path, size_t limit = 1 << 20);
// Reads a whole (small) file relative to `dirfd` (AT_FDCWD for a plain path), at most `limit`
// bytes. It must be a regular file, reached without following a symbolic link (an error with
// errno ELOOP; see open_at); a FIFO or device is an error (EINVAL), never a wait.
Expected<std::string> read_file(int dirfd, const std::string& path, size_t limit = 1 << 20);

// A regular file opened for reading as read_file() opens it (no symbolic link on the way, no
// wait on a FIFO or device: ELOOP, EINVAL), with its size from fstat.
struct RegularFile {
  UniqueFd fd;
  uint64_t size = 0;
};
Expected<RegularFile> open_regular(int dirfd, const std::string& path);

// Opens `path` relative to `dirfd` with O_CLOEXEC added to `flags`. With O_NOFOLLOW and a real
// `dirfd`, no component may be a symbolic link and the path may not leave `dirfd` (ELOOP,
// EXDEV), not only the last component.
Expected<UniqueFd> open_at(int dirfd, const std::string& path, int flags, unsigned mode = 0);

enum class FollowLinks { no, yes };
// Opens directory `path` relative to `dirfd` (AT_FDCWD for a plain path), creating it with
// `mode` (less the umask) first when it does not exist: racing processes that create the same
// directory both succeed. With FollowLinks::no a symbolic link in its place is an error (ELOOP
// or ENOTDIR), and under a real `dirfd` `path` must be one component (EINVAL otherwise), since
// mkdir would follow a link on the way.
Expected<UniqueFd> open_or_make_dir(int dirfd, const std::string& path, unsigned mode,
                                    FollowLinks follow = FollowLinks::no);

// Which names list_dir() passes on: hidden ones (a leading '.', where the store keeps its
// temporaries, reservations and the ledger) or not. "." and ".." never.
enum class Hidden { skip, include };

// Calls `fn` with each name in directory `dirfd` (which stays open and where it was). An error
// with the errno of the failing call when the directory cannot be opened for listing or a
// readdir() fails part-way (the names before the failure have been passed to `fn`).
Expected<void> list_dir(int dirfd, const std::function<void(std::string_view name)>& fn,
                        Hidden hidden = Hidden::skip);

} // namespace common
