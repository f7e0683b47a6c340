#include "common/s3/sigv4.hpp"

#include "common/base/hex.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <stdexcept>

namespace common::s3 {

namespace {

std::string hex(std::span<const uint8_t> bytes) {
  return hex_bytes(std::as_bytes(bytes));
}

template <size_t N>
std::array<uint8_t, N> digest(const EVP_MD* md, std::span<const std::byte> d) {
  std::array<uint8_t, N> out{};
  unsigned len = 0;
  if (EVP_Digest(d.data(), d.size(), out.data(), &len, md, nullptr) != 1 || len != N) {
    throw std::runtime_error("EVP_Digest failed");
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// SigV4 wants sequential spaces inside a header value folded to one.
std::string fold_spaces(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : trim(s)) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space) {
      out += ' ';
      space = false;
    }
    out += c;
  }
  return out;
}

} // namespace

std::array<uint8_t, 32> sha256(std::span<const std::byte> data) {
  return digest<32>(EVP_sha256(), data);
}

std::string sha256_hex(std::string_view data) {
  const auto d = sha256(std::as_bytes(std::span(data.data(), data.size())));
  return hex(d);
}

std::array<uint8_t, 16> md5(std::span<const std::byte> data) {
  return digest<16>(EVP_md5(), data);
}

Md5::Md5() : m_ctx(EVP_MD_CTX_new()) {
  if (m_ctx == nullptr ||
      EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(m_ctx), EVP_md5(), nullptr) != 1) {
    throw std::runtime_error("MD5 failed");
  }
}

Md5::~Md5() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(m_ctx));
}

void Md5::update(std::span<const std::byte> data) {
  if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(m_ctx), data.data(), data.size()) != 1) {
    throw std::runtime_error("MD5 failed");
  }
}

std::array<uint8_t, 16> Md5::finish() {
  std::array<uint8_t, 16> out{};
  unsigned len = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(m_ctx), out.data(), &len) != 1 ||
      len != out.size()) {
    throw std::runtime_error("MD5 failed");
  }
  return out;
}

std::array<uint8_t, 32> hmac_sha256(std::span<const uint8_t> key, std::string_view data) {
  std::array<uint8_t, 32> out{};
  unsigned len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(),
           &len) == nullptr ||
      len != out.size()) {
    throw std::runtime_error("HMAC failed");
  }
  return out;
}

std::string digest_hex(std::span<const uint8_t> digest) {
  return hex(digest);
}

std::string base64(std::span<const uint8_t> data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(),
                                static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string uri_encode(std::string_view s, Slash slash) {
  static constexpr char k_hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved || (c == '/' && slash == Slash::keep)) {
      out += ch;
    } else {
      out += '%';
      out += k_hex[c >> 4];
      out += k_hex[c & 15];
    }
  }
  return out;
}

std::string canonical_query(std::vector<QueryParam> params) {
  for (auto& [k, v] : params) {
    k = uri_encode(k, Slash::encode);
    v = uri_encode(v, Slash::encode);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) {
      out += '&';
    }
    out += k;
    out += '=';
    out += v;
  }
  return out;
}

Signature sign(const SignInput& in, std::string_view access_key, std::string_view secret_key) {
  std::vector<std::pair<std::string, std::string>> headers;
  headers.reserve(in.headers.size());
  for (const auto& [name, value] : in.headers) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    headers.emplace_back(std::move(lower), fold_spaces(value));
  }
  std::sort(headers.begin(), headers.end());

  Signature s;
  std::string canonical_headers;
  for (const auto& [name, value] : headers) {
    canonical_headers += name + ':' + value + '\n';
    if (!s.signed_headers.empty()) {
      s.signed_headers += ';';
    }
    s.signed_headers += name;
  }
  s.canonical_request = std::string(in.method) + '\n' + std::string(in.path) + '\n' +
                        std::string(in.query) + '\n' + canonical_headers + '\n' + s.signed_headers +
                        '\n' + std::string(in.payload_sha256);

  const std::string_view date = in.amz_date.substr(0, 8);
  const std::string scope = std::string(date) + '/' + std::string(in.region) + '/' +
                            std::string(in.service) + "/aws4_request";
  s.string_to_sign = "AWS4-HMAC-SHA256\n" + std::string(in.amz_date) + '\n' + scope + '\n' +
                     sha256_hex(s.canonical_request);

  const std::string k_secret = "AWS4" + std::string(secret_key);
  auto key = hmac_sha256(
      std::span(reinterpret_cast<const uint8_t*>(k_secret.data()), k_secret.size()), date);
  key = hmac_sha256(key, in.region);
  key = hmac_sha256(key, in.service);
  key = hmac_sha256(key, "aws4_request");
  s.signature = hex(hmac_sha256(key, s.string_to_sign));
  s.authorization = "AWS4-HMAC-SHA256 Credential=" + std::string(access_key) + '/' + scope +
                    ",SignedHeaders=" + s.signed_headers + ",Signature=" + s.signature;
  return s;
}

std::string amz_date(int64_t epoch_seconds) {
  const time_t t = static_cast<time_t>(epoch_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  const size_t n = strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(buf, n);
}

} // namespace common::s3
