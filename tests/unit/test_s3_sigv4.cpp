// SigV4 against AWS's published examples (the S3 API reference, "Examples: Signature
// Calculations in AWS Signature Version 4"), and the pieces S3 clients get wrong.
#include "common/s3/sigv4.hpp"

#include <catch2/catch.hpp>

using namespace common::s3;

namespace {

constexpr std::string_view k_access = "AKIAIOSFODNN7EXAMPLE";
constexpr std::string_view k_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr std::string_view k_date = "20130524T000000Z";
constexpr std::string_view k_host = "examplebucket.s3.amazonaws.com";

} // namespace

TEST_CASE("SigV4 GET object with a range (AWS example)", "[s3][sigv4]") {
  const Signature s = sign(SignInput{"GET",
                                     "/test.txt",
                                     "",
                                     {{"Host", std::string(k_host)},
                                      {"Range", "bytes=0-9"},
                                      {"x-amz-content-sha256", std::string(k_empty_sha256)},
                                      {"x-amz-date", std::string(k_date)}},
                                     k_empty_sha256,
                                     k_date,
                                     "us-east-1"},
                           k_access, k_secret);
  CHECK(s.string_to_sign == "AWS4-HMAC-SHA256\n20130524T000000Z\n"
                            "20130524/us-east-1/s3/aws4_request\n"
                            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  CHECK(s.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  CHECK(s.authorization ==
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("SigV4 PUT object with a signed payload (AWS example)", "[s3][sigv4]") {
  const std::string payload_hash = sha256_hex("Welcome to Amazon S3.");
  CHECK(payload_hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  const Signature s = sign(SignInput{"PUT",
                                     "/" + uri_encode("test$file.text", Slash::keep),
                                     "",
                                     {{"Host", std::string(k_host)},
                                      {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                      {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                      {"x-amz-content-sha256", payload_hash},
                                      {"x-amz-date", std::string(k_date)}},
                                     payload_hash,
                                     k_date,
                                     "us-east-1"},
                           k_access, k_secret);
  CHECK(s.signed_headers == "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
  CHECK(s.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST_CASE("SigV4 GET bucket lifecycle: a parameter without a value (AWS example)", "[s3][sigv4]") {
  const std::string query = canonical_query({{"lifecycle", ""}});
  CHECK(query == "lifecycle=");
  const Signature s = sign(SignInput{"GET",
                                     "/",
                                     query,
                                     {{"Host", std::string(k_host)},
                                      {"x-amz-content-sha256", std::string(k_empty_sha256)},
                                      {"x-amz-date", std::string(k_date)}},
                                     k_empty_sha256,
                                     k_date,
                                     "us-east-1"},
                           k_access, k_secret);
  CHECK(s.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST_CASE("SigV4 list objects: the query sorted by name (AWS example)", "[s3][sigv4]") {
  const std::string query = canonical_query({{"prefix", "J"}, {"max-keys", "2"}});
  CHECK(query == "max-keys=2&prefix=J");
  const Signature s = sign(SignInput{"GET",
                                     "/",
                                     query,
                                     {{"Host", std::string(k_host)},
                                      {"x-amz-content-sha256", std::string(k_empty_sha256)},
                                      {"x-amz-date", std::string(k_date)}},
                                     k_empty_sha256,
                                     k_date,
                                     "us-east-1"},
                           k_access, k_secret);
  CHECK(s.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST_CASE("SigV4 encoding: what curl's signer leaves to the caller", "[s3][sigv4]") {
  CHECK(uri_encode("a/b c+d~_.-", Slash::keep) == "a/b%20c%2Bd~_.-");
  CHECK(uri_encode("a/", Slash::encode) == "a%2F");
  CHECK(canonical_query({{"uploads", ""}}) == "uploads=");
  CHECK(canonical_query({{"prefix", "a/"}, {"list-type", "2"}}) == "list-type=2&prefix=a%2F");
  // Values are trimmed and inner runs of spaces folded before signing.
  const SignInput base{"GET",          "/",    "",         {{"host", "h"}, {"x-a", "1 2"}},
                       k_empty_sha256, k_date, "us-east-1"};
  SignInput spaced = base;
  spaced.headers[1].second = "  1   2 ";
  CHECK(sign(base, k_access, k_secret).signature == sign(spaced, k_access, k_secret).signature);
  CHECK(amz_date(1369353600) == "20130524T000000Z");
}

TEST_CASE("MD5 and base64 for Content-MD5", "[s3][sigv4]") {
  const std::string_view text = "Welcome to Amazon S3.";
  const auto m = md5(std::as_bytes(std::span(text.data(), text.size())));
  CHECK(base64(m).size() == 24);
  const std::string_view empty;
  CHECK(base64(md5(std::as_bytes(std::span(empty.data(), empty.size())))) ==
        "1B2M2Y8AsgTpgAmY7PhCfg==");
}
