#include "common/base/atomic_file.hpp"

#include "common/base/hex.hpp"
#include "common/base/io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

namespace common {

namespace {

// renameat2(RENAME_NOREPLACE), or where the file system refuses the flag (NFS, FUSE: EINVAL,
// the very file systems that lack O_TMPFILE) a hard link, which never replaces a file either,
// and the old name removed (systemd's rename_noreplace() does the same).
int rename_noreplace(int dirfd, const char* from, const char* to) {
  if (::renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0) {
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
    return -1;
  }
  if (::linkat(dirfd, from, dirfd, to, 0) != 0) {
    return -1;
  }
  ::unlinkat(dirfd, from, 0);
  return 0;
}

} // namespace

Expected<void> sync_fd(int fd, std::string_view what) {
  if (::fsync(fd) != 0) {
    return fail_errno("Failed to sync " + quoted(what), errno);
  }
  return {};
}

AtomicFile::AtomicFile(int dirfd, std::string name, UniqueFd fd, std::string tmp_name)
    : m_dirfd(dirfd), m_name(std::move(name)), m_fd(std::move(fd)),
      m_tmp_name(std::move(tmp_name)) {}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : m_dirfd(other.m_dirfd), m_name(std::move(other.m_name)), m_fd(std::move(other.m_fd)),
      m_tmp_name(std::move(other.m_tmp_name)), m_committed(other.m_committed) {
  other.m_tmp_name.clear();
  other.m_committed = true;
}

AtomicFile::~AtomicFile() {
  if (!m_committed && !m_tmp_name.empty()) {
    ::unlinkat(m_dirfd, m_tmp_name.c_str(), 0);
  }
}

Expected<AtomicFile> AtomicFile::create(int dirfd, std::string name, unsigned mode) {
  // O_TMPFILE gives an inode with no name at all: if we die before commit(), the kernel frees it
  // and nothing is left behind for anyone to clean up or to mistake for a complete file.
  const int fd = ::openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
  if (fd >= 0) {
    return AtomicFile(dirfd, std::move(name), UniqueFd(fd), {});
  }
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    return fail_errno("Failed to create a temporary file for " + quoted(name), errno);
  }
  // File systems without O_TMPFILE: a hidden random name that store scanners skip.
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::string tmp = ".#" + name + "." + random_hex(6);
    const int nfd = ::openat(dirfd, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
    if (nfd >= 0) {
      return AtomicFile(dirfd, std::move(name), UniqueFd(nfd), std::move(tmp));
    }
    if (errno != EEXIST) {
      return fail_errno("Failed to create " + quoted(tmp), errno);
    }
  }
  return fail("Failed to create a temporary file for " + quoted(name) + ": names exhausted");
}

Expected<void> AtomicFile::write(std::span<const std::byte> data) {
  if (auto r = write_all(m_fd.get(), data); !r) {
    return fail_errno("Failed to write " + quoted(m_name), r.error().sys_errno);
  }
  return {};
}

Expected<void> AtomicFile::write(std::string_view data) {
  return write(std::as_bytes(std::span(data.data(), data.size())));
}

Expected<void> AtomicFile::commit(Replace replace) {
  if (auto r = sync_fd(m_fd.get(), m_name); !r) {
    return r;
  }
  if (m_tmp_name.empty()) {
    // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, which we have dropped; the /proc
    // magic link works for any owner of the descriptor.
    const std::string proc = "/proc/self/fd/" + std::to_string(m_fd.get());
    if (replace == Replace::no) {
      if (::linkat(AT_FDCWD, proc.c_str(), m_dirfd, m_name.c_str(), AT_SYMLINK_FOLLOW) != 0) {
        return fail_errno("Failed to link " + quoted(m_name), errno);
      }
    } else {
      // Link under a temporary name, then rename over the target atomically.
      std::string tmp = ".#" + m_name + "." + random_hex(6);
      if (::linkat(AT_FDCWD, proc.c_str(), m_dirfd, tmp.c_str(), AT_SYMLINK_FOLLOW) != 0) {
        return fail_errno("Failed to link " + quoted(tmp), errno);
      }
      if (::renameat(m_dirfd, tmp.c_str(), m_dirfd, m_name.c_str()) != 0) {
        const int err = errno;
        ::unlinkat(m_dirfd, tmp.c_str(), 0);
        return fail_errno("Failed to rename " + quoted(tmp) + " to " + quoted(m_name), err);
      }
    }
  } else {
    const int r = replace == Replace::no
                      ? rename_noreplace(m_dirfd, m_tmp_name.c_str(), m_name.c_str())
                      : ::renameat(m_dirfd, m_tmp_name.c_str(), m_dirfd, m_name.c_str());
    if (r != 0) {
      return fail_errno("Failed to rename " + quoted(m_tmp_name) + " to " + quoted(m_name), errno);
    }
    m_tmp_name.clear();
  }
  m_committed = true;
  // The new directory entry is durable only once the directory itself is synced.
  return sync_fd(m_dirfd, m_name + "/..");
}

Expected<void> write_file_atomic(int dirfd, const std::string& name, std::string_view content,
                                 unsigned mode, Replace replace) {
  auto file = AtomicFile::create(dirfd, name, mode);
  if (!file) {
    return std::unexpected(file.error());
  }
  if (auto r = file->write(content); !r) {
    return r;
  }
  return file->commit(replace);
}

} // namespace common
