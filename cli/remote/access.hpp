// How corectl --remote reaches a fleet's bucket: the client's settings from the configuration's
// upload_* keys and the AWS_* environment a user expects to work, and what an S3 failure means
// as corectl's exit status.
#pragma once

#include "cli/exit.hpp"
#include "common/config/config.hpp"
#include "common/s3/client.hpp"

#include <expected>
#include <string>

namespace cli {

// The bucket and prefix of `url` and the client's settings. Endpoint and region: AWS_ENDPOINT_URL
// and AWS_REGION (or AWS_DEFAULT_REGION) over upload_endpoint and upload_region, as the AWS CLI
// lets its environment override its files. Credentials, the first that is there:
// AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); the file
// AWS_SHARED_CREDENTIALS_FILE; upload_credentials; ~/.aws/credentials; each file's profile
// AWS_PROFILE, else "default", and each file held to common/s3/credentials' permission rule.
// Reports a usage error (a bad URL or key) or Exit::denied (no usable credentials).
struct RemoteAccess {
  common::s3::BucketUrl url;
  common::s3::ClientOptions client;
  std::string credentials_source; // where the credentials came from, for messages (no secret)
};
std::expected<RemoteAccess, Exit> remote_access(const std::string& url,
                                                const common::Config& config);

// The exit status of a failed request: Exit::denied when the bucket refused the credentials
// (403, or an S3 code saying so), Exit::no_store when the bucket does not exist, else
// Exit::failure.
Exit exit_of(const common::s3::S3Error& error);

} // namespace cli
