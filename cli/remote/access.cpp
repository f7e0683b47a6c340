#include "cli/remote/access.hpp"

#include "common/base/escape.hpp"

#include <sys/stat.h>

#include <cstdlib>

namespace cli {

namespace {

// An environment variable, or "" when unset.
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string{} : std::string(v);
}

std::expected<common::s3::Credentials, Exit>
from_file(const std::string& path, const std::string& profile, const std::string& what) {
  auto c = common::s3::load_credentials_file(path, profile);
  if (!c) {
    return std::unexpected(report(Exit::denied, "Cannot use the S3 credentials of " + what + ": " +
                                                    c.error().message));
  }
  return *c;
}

} // namespace

std::expected<RemoteAccess, Exit> remote_access(const std::string& url,
                                                const common::Config& config) {
  RemoteAccess a;
  auto parsed = common::s3::parse_bucket_url(url);
  if (!parsed) {
    return std::unexpected(report(Exit::usage, "--remote: " + parsed.error().message));
  }
  a.url = *parsed;
  auto& c = a.client;
  c.bucket = a.url.bucket;
  c.endpoint = env("AWS_ENDPOINT_URL").empty() ? config.upload_endpoint : env("AWS_ENDPOINT_URL");
  if (!c.endpoint.empty() && !c.endpoint.starts_with("https://") &&
      !c.endpoint.starts_with("http://")) {
    return std::unexpected(report(Exit::usage, "The S3 endpoint must start with https:// (or "
                                               "http://): " +
                                                   common::quoted(c.endpoint)));
  }
  c.region = config.upload_region;
  for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
    if (!env(name).empty()) {
      c.region = env(name);
      break;
    }
  }
  if (config.upload_addressing == "virtual") {
    c.addressing = common::s3::Addressing::virtual_host;
  } else if (config.upload_addressing != "path") {
    return std::unexpected(report(Exit::usage, "upload_addressing must be path or virtual: " +
                                                   common::quoted(config.upload_addressing)));
  }
  c.ca_file = config.upload_ca_file;
  c.proxy = config.upload_proxy;
  // A listing of a big bucket or a core of gigabytes takes a while; a stalled one still ends.
  c.timeout_seconds = 3600;

  const std::string profile = env("AWS_PROFILE").empty() ? "default" : env("AWS_PROFILE");
  std::expected<common::s3::Credentials, Exit> creds;
  if (!env("AWS_ACCESS_KEY_ID").empty() || !env("AWS_SECRET_ACCESS_KEY").empty()) {
    auto e = common::s3::credentials_from_environment();
    if (!e) {
      return std::unexpected(report(Exit::denied, e.error().message));
    }
    creds = *e;
    a.credentials_source = "the environment (AWS_ACCESS_KEY_ID)";
  } else if (const std::string f = env("AWS_SHARED_CREDENTIALS_FILE"); !f.empty()) {
    a.credentials_source = "AWS_SHARED_CREDENTIALS_FILE " + common::quoted(f);
    creds = from_file(f, profile, a.credentials_source);
  } else if (!config.upload_credentials.empty()) {
    a.credentials_source = "upload_credentials " + common::quoted(config.upload_credentials);
    creds = from_file(config.upload_credentials, profile, a.credentials_source);
  } else if (const std::string home = env("HOME"); !home.empty()) {
    const std::string own = home + "/.aws/credentials";
    struct stat st {};
    if (::lstat(own.c_str(), &st) == 0) {
      a.credentials_source = common::quoted(own);
      creds = from_file(own, profile, a.credentials_source);
    } else {
      creds = std::unexpected(Exit::denied);
    }
  } else {
    creds = std::unexpected(Exit::denied);
  }
  if (!creds) {
    if (a.credentials_source.empty()) {
      return std::unexpected(
          report(Exit::denied, "No S3 credentials for " + common::quoted(url) +
                                   ": set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                   "AWS_SHARED_CREDENTIALS_FILE, upload_credentials in the "
                                   "configuration (--config) or ~/.aws/credentials"));
    }
    return std::unexpected(creds.error());
  }
  c.credentials = *creds;
  return a;
}

Exit exit_of(const common::s3::S3Error& error) {
  if (error.status == 403 || error.code == "AccessDenied" || error.code == "InvalidAccessKeyId" ||
      error.code == "SignatureDoesNotMatch") {
    return Exit::denied;
  }
  if (error.code == "NoSuchBucket") {
    return Exit::no_store;
  }
  return Exit::failure;
}

} // namespace cli
