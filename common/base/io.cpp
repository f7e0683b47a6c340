#include "common/base/io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>

namespace common {

Expected<void> write_all(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail_errno("write failed", errno);
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

Expected<void> write_all(int fd, std::string_view data) {
  return write_all(fd, std::as_bytes(std::span(data.data(), data.size())));
}

Expected<size_t> read_some(int fd, std::span<std::byte> buf) {
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) {
      return static_cast<size_t>(n);
    }
    if (errno != EINTR) {
      return fail_errno("read failed", errno);
    }
  }
}

Expected<size_t> read_full(int fd, std::span<std::byte> buf) {
  size_t got = 0;
  while (got < buf.size()) {
    auto n = read_some(fd, buf.subspan(got));
    if (!n) {
      return std::unexpected(n.error());
    }
    if (*n == 0) {
      break;
    }
    got += *n;
  }
  return got;
}

Expected<void> read_exact_at(int fd, std::span<std::byte> out, uint64_t offset) {
  if (offset > static_cast<uint64_t>(INT64_MAX) - out.size()) {
    return fail_errno("Read past the largest file offset", 0);
  }
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail_errno("Failed to read", errno);
    }
    if (n == 0) {
      return fail_errno("Unexpected end of file", 0);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Expected<void> write_all_at(int fd, std::span<const std::byte> data, uint64_t offset) {
  if (offset > static_cast<uint64_t>(INT64_MAX) - data.size()) {
    return fail_errno("Write past the largest file offset", EFBIG);
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return fail_errno("Failed to write", n < 0 ? errno : EIO);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Expected<UniqueFd> open_at(int dirfd, const std::string& path, int flags, unsigned mode) {
  if ((flags & O_NOFOLLOW) != 0 && dirfd != AT_FDCWD) {
    // O_NOFOLLOW covers the last component only; "host/exe/<id>.json" in a store the store's
    // owner controls must not pass through a linked directory either, nor leave `dirfd`.
    open_how how{};
    how.flags = static_cast<__u64>(static_cast<unsigned>(flags | O_CLOEXEC));
    how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH;
    const long fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how);
    if (fd >= 0) {
      return UniqueFd(static_cast<int>(fd));
    }
    if (errno != ENOSYS && errno != EPERM) { // EPERM: a seccomp filter that predates openat2
      return fail_errno("Failed to open " + quoted(path), errno);
    }
  }
  const int fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail_errno("Failed to open " + quoted(path), errno);
  }
  return UniqueFd(fd);
}

Expected<std::string> read_fd(int fd, const std::string& path, size_t limit) {
  std::string out;
  char buf[8192];
  for (;;) {
    auto n = read_some(fd, std::as_writable_bytes(std::span(buf)));
    if (!n) {
      return std::unexpected(
          Error{"Failed to read " + quoted(path) + ": " + n.error().message, n.error().sys_errno});
    }
    if (*n == 0) {
      break;
    }
    if (out.size() + *n > limit) {
      return fail("Failed to read " + quoted(path) + ": larger than " + std::to_string(limit) +
                  " bytes");
    }
    out.append(buf, *n);
  }
  return out;
}

Expected<RegularFile> open_regular(int dirfd, const std::string& path) {
  // O_NONBLOCK and a regular file only: a FIFO planted where a record is expected must not
  // stall a reader (root's corectl among them) forever. O_NOFOLLOW: the store's owner may plant
  // "<id>.json -> /etc/shadow", and root must not read (and print, or upload) where it points.
  auto fd = open_at(dirfd, path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().sys_errno == ELOOP) {
      return std::unexpected(
          Error{"Failed to open " + quoted(path) + ": a symbolic link, not followed", ELOOP});
    }
    return std::unexpected(fd.error());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) {
    return fail_errno("Failed to stat " + quoted(path), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return std::unexpected(
        Error{"Failed to open " + quoted(path) + ": not a regular file", EINVAL});
  }
  return RegularFile{std::move(*fd), static_cast<uint64_t>(st.st_size)};
}

Expected<std::string> read_file(int dirfd, const std::string& path, size_t limit) {
  auto f = open_regular(dirfd, path);
  if (!f) {
    return std::unexpected(f.error());
  }
  return read_fd(f->fd.get(), path, limit);
}

Expected<UniqueFd> open_or_make_dir(int dirfd, const std::string& path, unsigned mode,
                                    FollowLinks follow) {
  if (follow == FollowLinks::no && dirfd != AT_FDCWD && path.find('/') != std::string::npos) {
    return fail_errno("Failed to create directory " + quoted(path), EINVAL);
  }
  // mkdir first and ignore EEXIST: racing handlers of a crash storm create the same dirs.
  if (::mkdirat(dirfd, path.c_str(), mode) != 0 && errno != EEXIST) {
    return fail_errno("Failed to create directory " + quoted(path), errno);
  }
  return open_at(dirfd, path,
                 O_RDONLY | O_DIRECTORY | (follow == FollowLinks::no ? O_NOFOLLOW : 0));
}

Expected<void> list_dir(int dirfd, const std::function<void(std::string_view name)>& fn,
                        Hidden hidden) {
  // fdopendir() takes ownership of its descriptor, so give it a fresh one of the same directory.
  const int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) {
    return fail_errno("Failed to open directory", errno);
  }
  DIR* dir = ::fdopendir(dup);
  if (!dir) {
    const int err = errno;
    ::close(dup);
    return fail_errno("Failed to open directory", err);
  }
  const std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, ::closedir);
  for (;;) {
    // readdir() returns NULL both at the end and on an error (EIO, or ENOENT once the
    // directory's /proc process is gone): only errno tells them apart, so it is cleared first.
    // Without this a failing directory reads as a short one, and vacuum would decide on it.
    errno = 0;
    const dirent* de = ::readdir(dir);
    if (!de) {
      if (errno != 0) {
        return fail_errno("Failed to read directory", errno);
      }
      return {};
    }
    const std::string_view name(de->d_name);
    if (name == "." || name == ".." || (hidden == Hidden::skip && name.starts_with('.'))) {
      continue;
    }
    // fn may change errno (it often does: fstatat on a vanished name); the loop resets it.
    fn(name);
  }
}

} // namespace common
