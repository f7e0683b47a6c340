// Shared helpers for unit tests.
#pragma once

#include <filesystem>
#include <string>

namespace test {

// A fresh directory per test under $TMPDIR; removed afterwards unless an assertion of the
// running test failed (then kept and its path printed, for a look at what was left).
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return m_path; }
  std::string str() const { return m_path.string(); }

private:
  std::filesystem::path m_path;
};

// Reads a whole file as bytes.
std::string slurp(const std::filesystem::path& path);
// Writes bytes to a file.
void spit(const std::filesystem::path& path, const std::string& data);

// A descriptor of a directory whose readdir() fails for real (errno ENOENT): /proc/<pid>/fd of
// a child reaped since it was opened. -1 when it cannot be made. The caller closes it.
int reaped_proc_dir();

// True once an assertion of the current test case has failed.
bool current_test_failed();

} // namespace test
