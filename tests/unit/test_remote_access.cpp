// corectl --remote's settings: the URL, the configuration's upload_* keys, the AWS_* environment
// and its precedence, and what S3 failures mean as exit statuses.
#include "cli/options.hpp"
#include "cli/remote/access.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

using namespace cli;

namespace {

// Sets the AWS_* variables (and HOME) of one test, and puts back what was there afterwards.
struct Env {
  explicit Env(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (size_t i = 0; i < std::size(k_names); ++i) {
      const char* v = std::getenv(k_names[i]);
      m_saved[i] = v == nullptr ? std::nullopt : std::optional<std::string>(v);
      ::unsetenv(k_names[i]);
    }
    for (const auto& [name, value] : vars) {
      ::setenv(name, value, 1);
    }
  }
  ~Env() {
    for (size_t i = 0; i < std::size(k_names); ++i) {
      if (m_saved[i]) {
        ::setenv(k_names[i], m_saved[i]->c_str(), 1);
      } else {
        ::unsetenv(k_names[i]);
      }
    }
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  static constexpr const char* k_names[] = {"AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY",
                                            "AWS_SESSION_TOKEN",
                                            "AWS_PROFILE",
                                            "AWS_ENDPOINT_URL",
                                            "AWS_REGION",
                                            "AWS_DEFAULT_REGION",
                                            "AWS_SHARED_CREDENTIALS_FILE",
                                            "HOME"};
  std::optional<std::string> m_saved[std::size(k_names)];
};

std::string credentials_file(const std::filesystem::path& dir, const std::string& profile,
                             const std::string& key, mode_t mode) {
  const auto path = dir / ("credentials-" + key);
  std::ofstream(path) << "[" << profile << "]\naws_access_key_id = " << key
                      << "\naws_secret_access_key = secret-" << key << "\n";
  ::chmod(path.c_str(), mode);
  return path.string();
}

} // namespace

TEST_CASE("corectl --remote is a global option", "[remote]") {
  auto o = parse_options({"--remote", "s3://b/p", "groups", "--json"});
  REQUIRE(o);
  CHECK(o->remote == "s3://b/p");
  CHECK(o->verb == "groups");
  auto after = parse_options({"list", "--remote=s3://b"});
  REQUIRE(after);
  CHECK(after->remote == "s3://b");
}

TEST_CASE("corectl --remote settings: configuration, environment and their order", "[remote]") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("pc-remote-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  common::Config config;
  config.upload_endpoint = "http://127.0.0.1:7480";
  config.upload_region = "eu-west-1";
  config.upload_credentials = credentials_file(dir, "default", "CONF", 0600);

  SECTION("the configuration alone") {
    Env env({});
    auto a = remote_access("s3://crashes/fleet", config);
    REQUIRE(a);
    CHECK(a->url.bucket == "crashes");
    CHECK(a->url.prefix == "fleet");
    CHECK(a->client.endpoint == "http://127.0.0.1:7480");
    CHECK(a->client.region == "eu-west-1");
    CHECK(a->client.credentials.access_key == "CONF");
    CHECK(a->credentials_source.find("secret") == std::string::npos);
  }
  SECTION("the environment wins over the file, as for the AWS CLI") {
    Env env({{"AWS_ACCESS_KEY_ID", "ENV"},
             {"AWS_SECRET_ACCESS_KEY", "s"},
             {"AWS_ENDPOINT_URL", "https://s3.example.net"},
             {"AWS_REGION", "ap-south-1"}});
    auto a = remote_access("s3://crashes", config);
    REQUIRE(a);
    CHECK(a->client.credentials.access_key == "ENV");
    CHECK(a->client.endpoint == "https://s3.example.net");
    CHECK(a->client.region == "ap-south-1");
  }
  SECTION("AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE") {
    const auto shared = credentials_file(dir, "ops", "SHARED", 0600);
    Env env({{"AWS_SHARED_CREDENTIALS_FILE", shared.c_str()}, {"AWS_PROFILE", "ops"}});
    auto a = remote_access("s3://crashes", config);
    REQUIRE(a);
    CHECK(a->client.credentials.access_key == "SHARED");
  }
  SECTION("a file others can read is refused, as denied") {
    config.upload_credentials = credentials_file(dir, "default", "OPEN", 0644);
    Env env({});
    auto a = remote_access("s3://crashes", config);
    REQUIRE_FALSE(a);
    CHECK(a.error() == Exit::denied);
  }
  SECTION("no credentials anywhere") {
    config.upload_credentials.clear();
    const std::string home = (dir / "home").string();
    Env env({{"HOME", home.c_str()}});
    auto a = remote_access("s3://crashes", config);
    REQUIRE_FALSE(a);
    CHECK(a.error() == Exit::denied);
  }
  SECTION("a bad URL or endpoint is a usage error") {
    Env env({});
    CHECK(remote_access("https://crashes/fleet", config).error() == Exit::usage);
    config.upload_endpoint = "ftp://x";
    CHECK(remote_access("s3://crashes", config).error() == Exit::usage);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("S3 failures as exit statuses", "[remote]") {
  using common::s3::S3Error;
  CHECK(exit_of(S3Error{403, "SignatureDoesNotMatch", ""}) == Exit::denied);
  CHECK(exit_of(S3Error{400, "InvalidAccessKeyId", ""}) == Exit::denied);
  CHECK(exit_of(S3Error{404, "NoSuchBucket", ""}) == Exit::no_store);
  CHECK(exit_of(S3Error{0, "", ""}) == Exit::failure);
  CHECK(exit_of(S3Error{500, "InternalError", ""}) == Exit::failure);
}
