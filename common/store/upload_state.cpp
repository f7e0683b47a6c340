#include "common/store/upload_state.hpp"

#include "common/base/io.hpp"
#include "common/store/names.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>

#include <array>

namespace common {

namespace {

constexpr std::array k_core_states = {UploadCoreState::pending, UploadCoreState::done,
                                      UploadCoreState::skipped, UploadCoreState::none};

} // namespace

std::string_view to_string(UploadCoreState s) {
  switch (s) {
  case UploadCoreState::pending:
    return "pending";
  case UploadCoreState::done:
    return "done";
  case UploadCoreState::skipped:
    return "skipped";
  case UploadCoreState::none:
    return "none";
  }
  return "pending";
}

std::optional<UploadCoreState> parse_upload_core_state(std::string_view s) {
  for (UploadCoreState c : k_core_states) {
    if (to_string(c) == s) {
      return c;
    }
  }
  return std::nullopt;
}

Expected<UniqueFd> open_upload_state_dir(const std::string& path) {
  return open_at(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

std::optional<UploadProgress> read_upload_progress(int dirfd, const std::string& id) {
  // The id becomes a file name: only a store component, never a path.
  if (!is_safe_component(id)) {
    return std::nullopt;
  }
  // read_file: a regular file reached without a symbolic link, bounded, never a FIFO's wait.
  auto text = read_file(dirfd, id + ".json", k_max_upload_state_bytes);
  if (!text) {
    return std::nullopt;
  }
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    return std::nullopt;
  }
  UploadProgress p;
  if (const auto it = j.find("record_done"); it != j.end()) {
    if (!it->is_boolean()) {
      return std::nullopt;
    }
    p.record_done = it->get<bool>();
  }
  if (const auto it = j.find("core"); it != j.end()) {
    const auto core =
        it->is_string() ? parse_upload_core_state(it->get<std::string>()) : std::nullopt;
    if (!core) {
      return std::nullopt;
    }
    p.core = *core;
  }
  return p;
}

} // namespace common
