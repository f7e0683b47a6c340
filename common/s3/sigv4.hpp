// AWS Signature Version 4 for S3: canonical request, string to sign, signing key, the
// Authorization header. Our own over OpenSSL rather than libcurl's CURLOPT_AWS_SIGV4, which (in
// curl 7.88) neither signs x-amz-content-sha256 nor canonicalizes the query string.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace common::s3 {

// The hex SHA-256 of an empty payload (GET, HEAD, DELETE).
inline constexpr std::string_view k_empty_sha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// SHA-256 and HMAC-SHA256 (OpenSSL), raw and as lower-case hex.
std::array<uint8_t, 32> sha256(std::span<const std::byte> data);
std::string sha256_hex(std::string_view data);
std::array<uint8_t, 32> hmac_sha256(std::span<const uint8_t> key, std::string_view data);
// MD5 (Content-MD5 and ETags, not for security).
std::array<uint8_t, 16> md5(std::span<const std::byte> data);
// MD5 fed piece by piece (a downloaded file checked against its ETag without holding it).
class Md5 {
public:
  Md5();
  ~Md5();
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void update(std::span<const std::byte> data);
  std::array<uint8_t, 16> finish();

private:
  void* m_ctx; // EVP_MD_CTX
};
// Lower-case hex of a digest.
std::string digest_hex(std::span<const uint8_t> digest);
// Standard base64 (Content-MD5).
std::string base64(std::span<const uint8_t> data);

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters as they are, everything
// else %XX in upper case; '/' kept when `keep_slash` (object paths), encoded otherwise (query).
enum class Slash { keep, encode };
std::string uri_encode(std::string_view s, Slash slash);

// A query parameter, unencoded. An empty value is written "name=" (S3 wants "?uploads=").
using QueryParam = std::pair<std::string, std::string>;
// The canonical query string: each name and value encoded, sorted by encoded name then value,
// joined with '&'. The same text goes into the URL, so what is signed is what is sent.
std::string canonical_query(std::vector<QueryParam> params);

// What one request signs. `path` is the already-encoded absolute path ("/bucket/key");
// `headers` are (name, value) pairs to sign; names are lower-cased and values trimmed here.
// They must include host, x-amz-date and x-amz-content-sha256.
struct SignInput {
  std::string_view method;
  std::string_view path;
  std::string_view query; // canonical_query() text, or empty
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view payload_sha256; // hex, or "UNSIGNED-PAYLOAD"
  std::string_view amz_date;       // "20130524T000000Z"
  std::string_view region;
  std::string_view service = "s3";
};

// The intermediate texts, kept for tests and for debugging a refused signature.
struct Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers; // "host;range;x-amz-content-sha256;x-amz-date"
  std::string signature;      // hex
  std::string authorization;  // the Authorization header's value
};

// Signs `in` with the access key and secret.
Signature sign(const SignInput& in, std::string_view access_key, std::string_view secret_key);

// The x-amz-date text of a time in seconds since the epoch.
std::string amz_date(int64_t epoch_seconds);

} // namespace common::s3
