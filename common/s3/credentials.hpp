// S3 credentials: AWS's shared credentials file ([profile], aws_access_key_id,
// aws_secret_access_key, aws_session_token) or the AWS_* environment variables. The file must be
// readable by its user alone; secrets never reach a message.
#pragma once

#include "common/base/error.hpp"

#include <string>
#include <string_view>

namespace common::s3 {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token; // empty: none
};

// Reads `profile` from the credentials file at `path`. The file is refused (with the reason)
// unless it is a regular file, not a link, and either the caller's own with no access for group
// or others (0600/0400; systemd's LoadCredential= makes such a file), or root's with the
// caller's group and no write access for the group and no access for others (0640/0440
// root:<the uploader's group>).
Expected<Credentials> load_credentials_file(const std::string& path, std::string_view profile);

// Parses credentials-file text (no permission check; for tests and for load_credentials_file).
Expected<Credentials> parse_credentials(std::string_view text, std::string_view profile,
                                        std::string_view source);

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN when the first two are set.
Expected<Credentials> credentials_from_environment();

} // namespace common::s3
