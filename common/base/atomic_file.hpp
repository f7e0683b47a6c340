// A file that appears under its final name only once it is complete and durable.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <span>
#include <string>
#include <string_view>

namespace common {

enum class Replace { no, yes };

// Created as an unnamed O_TMPFILE in the target directory (or, where the file system lacks
// O_TMPFILE, under a hidden random name); commit() fsyncs it, links it under its final name and
// fsyncs the directory. An uncommitted file vanishes with the object, so a crash or an error
// never leaves a partial file under the final name.
class AtomicFile {
public:
  // Prepares `name` (a single component) in directory `dirfd`, created with permissions `mode`.
  static Expected<AtomicFile> create(int dirfd, std::string name, unsigned mode);

  AtomicFile(AtomicFile&&) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  ~AtomicFile();

  // The descriptor to write to.
  int fd() const { return m_fd.get(); }
  // Appends `data`.
  Expected<void> write(std::span<const std::byte> data);
  Expected<void> write(std::string_view data);
  // Makes the file durable and visible under its name. With Replace::no an existing file of that
  // name is an error (EEXIST) and is left alone.
  Expected<void> commit(Replace replace = Replace::no);

private:
  AtomicFile(int dirfd, std::string name, UniqueFd fd, std::string tmp_name);

  int m_dirfd;
  std::string m_name;
  UniqueFd m_fd;
  std::string m_tmp_name; // empty when the file is an unnamed O_TMPFILE
  bool m_committed = false;
};

// Writes `content` to `dirfd`/`name` atomically (create, write, commit).
Expected<void> write_file_atomic(int dirfd, const std::string& name, std::string_view content,
                                 unsigned mode, Replace replace = Replace::no);

// fsync() on a descriptor, with a message naming `what`.
Expected<void> sync_fd(int fd, std::string_view what);

} // namespace common
