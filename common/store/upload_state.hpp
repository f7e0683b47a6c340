// The uploader's per-crash state as others read it: process-core-uploader writes one small JSON
// file per crash, <id>.json, in its own directory (upload_state_dir), and retention reads it to
// spare what is not uploaded yet. The format lives here, below both, so they agree on it.
#pragma once

#include "common/base/error.hpp"
#include "common/base/fd.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace common {

// Where a crash's core stands with the uploader.
enum class UploadCoreState {
  pending, // still to upload
  done,    // uploaded and verified
  skipped, // by policy (upload_cores, privilege-changed process)
  none,    // the record has no core (never stored, or removed by retention)
};
std::string_view to_string(UploadCoreState s);
std::optional<UploadCoreState> parse_upload_core_state(std::string_view s);

// The largest state file read: a state is a few hundred bytes, a larger one is not the
// uploader's.
inline constexpr size_t k_max_upload_state_bytes = 64 << 10;

// What retention needs of a crash's state.
struct UploadProgress {
  bool record_done = false;
  UploadCoreState core = UploadCoreState::pending;
};

// Opens the state directory to read, without following a symbolic link in its place.
Expected<UniqueFd> open_upload_state_dir(const std::string& path);

// The state of crash `id` in the directory open as `dirfd`, or nullopt when there is none or it
// cannot be used: not a regular file, a symbolic link, too large, not a JSON object, fields of
// the wrong type. The directory is the uploader's, so all of that counts as "not uploaded".
std::optional<UploadProgress> read_upload_progress(int dirfd, const std::string& id);

} // namespace common
