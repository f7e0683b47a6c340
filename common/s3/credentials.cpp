#include "common/s3/credentials.hpp"

#include "common/base/fd.hpp"
#include "common/base/io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace common::s3 {

namespace {

// A credentials file is a few lines; anything larger is not one.
constexpr size_t k_max_credentials_bytes = 64 << 10;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

} // namespace

Expected<Credentials> parse_credentials(std::string_view text, std::string_view profile,
                                        std::string_view source) {
  Credentials c;
  bool in_profile = false;
  bool seen_profile = false;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#' || line.front() == ';') {
      continue;
    }
    if (line.front() == '[') {
      if (line.back() != ']') {
        return fail("Malformed section line in " + quoted(source));
      }
      std::string_view name = trim(line.substr(1, line.size() - 2));
      if (name.starts_with("profile ")) {
        name = trim(name.substr(8));
      }
      in_profile = name == profile;
      seen_profile = seen_profile || in_profile;
      continue;
    }
    if (!in_profile) {
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      // The line may hold a secret: never quote it.
      return fail("Malformed line (no '=') in " + quoted(source));
    }
    const std::string_view key = trim(line.substr(0, eq));
    const std::string_view value = trim(line.substr(eq + 1));
    if (key == "aws_access_key_id") {
      c.access_key = value;
    } else if (key == "aws_secret_access_key") {
      c.secret_key = value;
    } else if (key == "aws_session_token") {
      c.session_token = value;
    }
  }
  if (!seen_profile) {
    return fail("No profile [" + std::string(profile) + "] in " + quoted(source));
  }
  if (c.access_key.empty() || c.secret_key.empty()) {
    return fail("Profile [" + std::string(profile) + "] in " + quoted(source) +
                " lacks aws_access_key_id or aws_secret_access_key");
  }
  return c;
}

Expected<Credentials> load_credentials_file(const std::string& path, std::string_view profile) {
  const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
  if (raw < 0) {
    return fail_errno("Failed to open credentials " + quoted(path), errno);
  }
  UniqueFd fd(raw);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    return fail_errno("Failed to stat credentials " + quoted(path), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail("Credentials " + quoted(path) + " are not a regular file");
  }
  const bool own = st.st_uid == geteuid() && (st.st_mode & 077) == 0;
  const bool root_group =
      st.st_uid == 0 && st.st_gid == getegid() && (st.st_mode & 027) == 0 && geteuid() != 0;
  if (!own && !root_group) {
    return fail("Refusing credentials " + quoted(path) +
                ": they must be readable by this user alone (mode 0600, owned by uid " +
                std::to_string(geteuid()) + "), or root's with this user's group (mode 0640)");
  }
  if (static_cast<uint64_t>(st.st_size) > k_max_credentials_bytes) {
    return fail("Credentials " + quoted(path) + " are too large");
  }
  std::string text;
  char buf[4096];
  for (;;) {
    auto n = read_some(fd.get(), std::as_writable_bytes(std::span(buf)));
    if (!n) {
      return fail("Failed to read credentials " + quoted(path) + ": " + n.error().message);
    }
    if (*n == 0) {
      break;
    }
    text.append(buf, *n);
    if (text.size() > k_max_credentials_bytes) {
      return fail("Credentials " + quoted(path) + " are too large");
    }
  }
  return parse_credentials(text, profile, path);
}

Expected<Credentials> credentials_from_environment() {
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (id == nullptr || secret == nullptr || *id == '\0' || *secret == '\0') {
    return fail("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set");
  }
  Credentials c{id, secret, {}};
  if (const char* token = std::getenv("AWS_SESSION_TOKEN")) {
    c.session_token = token;
  }
  return c;
}

} // namespace common::s3
