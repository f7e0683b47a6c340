#include "common/s3/client.hpp"

#include "common/base/hex.hpp"
#include "common/base/io.hpp"
#include "common/s3/sigv4.hpp"
#include "common/s3/xml.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace common::s3 {

namespace {

// Response headers kept: enough for ETags, sizes and metadata, never unbounded.
constexpr size_t k_max_header_bytes = 64 << 10;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string unquote(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
    s = s.substr(1, s.size() - 2);
  }
  return std::string(s);
}

bool valid_bucket(std::string_view b) {
  if (b.size() < 3 || b.size() > 63) {
    return false;
  }
  return std::all_of(b.begin(), b.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

// Metadata values go into headers: no line breaks or control characters, and bounded.
std::string header_safe(std::string_view v) {
  std::string out;
  for (const char c : v.substr(0, 512)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '_' : c;
  }
  return out;
}

// curl drops a header without a value (and would then send what was not signed): metadata
// without a value is not sent.
void add_metadata(std::vector<std::pair<std::string, std::string>>& headers,
                  const std::map<std::string, std::string>& metadata) {
  for (const auto& [name, value] : metadata) {
    std::string v = header_safe(value);
    if (!v.empty()) {
      headers.emplace_back("x-amz-meta-" + lower(name), std::move(v));
    }
  }
}

} // namespace

Expected<BucketUrl> parse_bucket_url(std::string_view url) {
  constexpr std::string_view k_scheme = "s3://";
  if (!url.starts_with(k_scheme)) {
    return fail("Not an s3:// URL: " + quoted(url));
  }
  url.remove_prefix(k_scheme.size());
  const size_t slash = url.find('/');
  BucketUrl b;
  b.bucket = std::string(url.substr(0, slash));
  if (!valid_bucket(b.bucket)) {
    return fail("Not a bucket name: " + quoted(b.bucket));
  }
  if (slash != std::string_view::npos) {
    std::string_view p = url.substr(slash + 1);
    while (p.ends_with('/')) {
      p.remove_suffix(1);
    }
    b.prefix = std::string(p);
  }
  return b;
}

struct Client::Request {
  std::string method = "GET";
  std::string key; // object key, unencoded; empty: the bucket
  std::vector<QueryParam> query;
  std::vector<std::pair<std::string, std::string>> headers; // extra headers, signed
  std::span<const std::byte> body;
  int sink_fd = -1;                   // GET body into this fd
  size_t max_body = k_max_body_bytes; // else into memory up to this
};

struct Client::Response {
  long status = 0;
  std::map<std::string, std::string> headers; // lower-case names
  std::string body;
  uint64_t body_bytes = 0;
  bool body_too_large = false;
  std::string sink_error;
};

namespace {

struct Transfer {
  std::span<const std::byte> body;
  size_t sent = 0;
  int sink_fd = -1;
  size_t max_body = 0;
  size_t header_bytes = 0;
  std::map<std::string, std::string>* headers = nullptr;
  std::string* body_out = nullptr;
  uint64_t* body_bytes = nullptr;
  bool* too_large = nullptr;
  std::string* sink_error = nullptr;
};

size_t on_read(char* buf, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  const size_t len = std::min(size * n, t->body.size() - t->sent);
  std::memcpy(buf, t->body.data() + t->sent, len);
  t->sent += len;
  return len;
}

size_t on_write(char* buf, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  const size_t len = size * n;
  *t->body_bytes += len;
  if (t->sink_fd >= 0) {
    // A file is bounded too: a hostile server's endless body must not fill the disk.
    if (*t->body_bytes > t->max_body) {
      *t->too_large = true;
      return 0;
    }
    if (auto w = write_all(t->sink_fd, std::as_bytes(std::span(buf, len))); !w) {
      *t->sink_error = w.error().message;
      return 0;
    }
    return len;
  }
  if (t->body_out->size() + len > t->max_body) {
    *t->too_large = true;
    return 0;
  }
  t->body_out->append(buf, len);
  return len;
}

size_t on_header(char* buf, size_t size, size_t n, void* p) {
  auto* t = static_cast<Transfer*>(p);
  const size_t len = size * n;
  t->header_bytes += len;
  if (t->header_bytes > k_max_header_bytes) {
    return 0;
  }
  std::string_view line(buf, len);
  if (line.starts_with("HTTP/")) {
    t->headers->clear(); // a 100 Continue or a new response
    return len;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return len;
  }
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  (*t->headers)[lower(line.substr(0, colon))] = std::string(value);
  return len;
}

} // namespace

Client::Client(ClientOptions options) : m_options(std::move(options)) {
  global_init();
  std::string endpoint = m_options.endpoint;
  if (endpoint.empty()) {
    endpoint = "https://s3." + m_options.region + ".amazonaws.com";
  }
  while (endpoint.ends_with('/')) {
    endpoint.pop_back();
  }
  const size_t scheme_end = endpoint.find("://");
  const std::string scheme =
      scheme_end == std::string::npos ? "https" : endpoint.substr(0, scheme_end);
  std::string authority =
      scheme_end == std::string::npos ? endpoint : endpoint.substr(scheme_end + 3);
  if (m_options.addressing == Addressing::virtual_host) {
    authority = m_options.bucket + "." + authority;
  } else {
    m_base_path = "/" + m_options.bucket;
  }
  m_host = authority;
  m_scheme_host = scheme + "://" + authority;
  m_curl = curl_easy_init();
}

Client::~Client() {
  if (m_curl != nullptr) {
    curl_easy_cleanup(static_cast<CURL*>(m_curl));
  }
}

Client::Client(Client&& o) noexcept
    : m_options(std::move(o.m_options)), m_scheme_host(std::move(o.m_scheme_host)),
      m_host(std::move(o.m_host)), m_base_path(std::move(o.m_base_path)),
      m_curl(std::exchange(o.m_curl, nullptr)), m_last(std::move(o.m_last)) {}

Client& Client::operator=(Client&& o) noexcept {
  if (this != &o) {
    if (m_curl != nullptr) {
      curl_easy_cleanup(static_cast<CURL*>(m_curl));
    }
    m_options = std::move(o.m_options);
    m_scheme_host = std::move(o.m_scheme_host);
    m_host = std::move(o.m_host);
    m_base_path = std::move(o.m_base_path);
    m_curl = std::exchange(o.m_curl, nullptr);
    m_last = std::move(o.m_last);
  }
  return *this;
}

Expected<Client::Response> Client::perform(Request& rq) {
  // The last error is this request's or none: a failure of ours (an ETag that does not match)
  // after an earlier S3 error must not be reported with that error's status.
  m_last = S3Error{};
  CURL* curl = static_cast<CURL*>(m_curl);
  if (curl == nullptr) {
    return fail("Failed to initialize libcurl");
  }
  curl_easy_reset(curl);
  // A request of the bucket itself (a listing) goes to "/BUCKET" in path style, as the AWS SDKs
  // send it, not "/BUCKET/": servers that rebuild the path to check the signature (s3rver) sign
  // it without the slash.
  const std::string path = rq.key.empty() && !m_base_path.empty()
                               ? m_base_path
                               : m_base_path + "/" + uri_encode(rq.key, Slash::keep);
  const std::string query = canonical_query(rq.query);
  const std::string url = m_scheme_host + path + (query.empty() ? "" : "?" + query);

  const std::string payload_hash =
      rq.body.empty() ? std::string(k_empty_sha256) : digest_hex(sha256(rq.body));
  const std::string date = amz_date(time(nullptr));
  std::vector<std::pair<std::string, std::string>> signed_headers = rq.headers;
  signed_headers.emplace_back("host", m_host);
  signed_headers.emplace_back("x-amz-date", date);
  signed_headers.emplace_back("x-amz-content-sha256", payload_hash);
  if (!m_options.credentials.session_token.empty()) {
    signed_headers.emplace_back("x-amz-security-token", m_options.credentials.session_token);
  }
  const Signature sig =
      sign(SignInput{rq.method, path, query, signed_headers, payload_hash, date, m_options.region},
           m_options.credentials.access_key, m_options.credentials.secret_key);

  curl_slist* list = nullptr;
  for (const auto& [name, value] : signed_headers) {
    list = curl_slist_append(list, (name + ": " + value).c_str());
  }
  list = curl_slist_append(list, ("Authorization: " + sig.authorization).c_str());
  list = curl_slist_append(list, "Expect:"); // no 100-continue round trip
  list = curl_slist_append(list, "Accept:");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(list, curl_slist_free_all);

  Response rs;
  Transfer t;
  t.body = rq.body;
  t.sink_fd = rq.sink_fd;
  t.max_body = rq.max_body;
  t.headers = &rs.headers;
  t.body_out = &rs.body;
  t.body_bytes = &rs.body_bytes;
  t.too_large = &rs.body_too_large;
  t.sink_error = &rs.sink_error;

  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!m_options.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, m_options.ca_file.c_str());
  }
  // An empty proxy turns the environment's *_proxy variables off: the configuration decides.
  curl_easy_setopt(curl, CURLOPT_PROXY, m_options.proxy.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(m_options.timeout_seconds));
  if (m_options.max_send_bytes_per_second > 0) {
    curl_easy_setopt(curl, CURLOPT_MAX_SEND_SPEED_LARGE,
                     static_cast<curl_off_t>(m_options.max_send_bytes_per_second));
  }
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  if (rq.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (rq.method == "PUT" || rq.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &t);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
    if (rq.method == "POST") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "POST");
    }
  } else if (rq.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, rq.method.c_str());
  }
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);

  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &rs.status);
  // Keys are the store's safe names, but the URL is still not logged in full: the method and
  // key say what failed.
  const std::string what = rq.method + " " + quoted(rq.key.empty() ? "/" : rq.key);
  if (!rs.sink_error.empty()) {
    m_last = S3Error{rs.status, "LocalWrite", rs.sink_error};
    return fail(what + ": " + rs.sink_error);
  }
  if (rs.body_too_large) {
    m_last = S3Error{rs.status, "ResponseTooLarge", {}};
    return fail(what + ": the response is larger than " + std::to_string(rq.max_body) + " bytes");
  }
  if (rc != CURLE_OK) {
    m_last = S3Error{0, "Transport", curl_easy_strerror(rc)};
    return fail(what + " failed: " + (errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc)));
  }
  return rs;
}

Error Client::to_error(const Response& rs, std::string_view what) {
  S3Error e{rs.status, {}, {}};
  if (!rs.body.empty()) {
    e.code = header_safe(xml_unescape(xml_text(rs.body, "Code").value_or("")));
    e.message = header_safe(xml_unescape(xml_text(rs.body, "Message").value_or("")));
  }
  if (e.code.empty()) {
    e.code = rs.status == 404 ? "NoSuchKey" : rs.status == 403 ? "AccessDenied" : "HTTP";
  }
  m_last = e;
  std::string msg = std::string(what) + ": HTTP " + std::to_string(rs.status) + " " + e.code;
  if (!e.message.empty()) {
    msg += " (" + e.message + ")";
  }
  if (e.code == "SignatureDoesNotMatch" || e.code == "InvalidAccessKeyId") {
    msg += "; check the access key and secret in the credentials";
  }
  Error err{msg, rs.status == 404 ? ENOENT : 0};
  return err;
}

Expected<ObjectInfo> Client::head(const std::string& key) {
  Request rq;
  rq.method = "HEAD";
  rq.key = key;
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 200) {
    return std::unexpected(to_error(*rs, "HEAD " + quoted(key)));
  }
  ObjectInfo info;
  if (auto it = rs->headers.find("content-length"); it != rs->headers.end()) {
    info.size = std::strtoull(it->second.c_str(), nullptr, 10);
  }
  if (auto it = rs->headers.find("etag"); it != rs->headers.end()) {
    info.etag = unquote(it->second);
  }
  for (const auto& [name, value] : rs->headers) {
    if (name.starts_with("x-amz-meta-")) {
      info.metadata[name.substr(11)] = value;
    }
  }
  return info;
}

Expected<std::string> Client::put(const std::string& key, std::span<const std::byte> data,
                                  const std::map<std::string, std::string>& metadata,
                                  std::string_view content_type) {
  Request rq;
  rq.method = "PUT";
  rq.key = key;
  rq.body = data;
  rq.headers.emplace_back("content-md5", base64(md5(data)));
  rq.headers.emplace_back("content-type", std::string(content_type));
  add_metadata(rq.headers, metadata);
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 200) {
    return std::unexpected(to_error(*rs, "PUT " + quoted(key)));
  }
  return unquote(rs->headers["etag"]);
}

Expected<std::string> Client::get(const std::string& key, size_t max_bytes) {
  Request rq;
  rq.key = key;
  rq.max_body = max_bytes;
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 200) {
    return std::unexpected(to_error(*rs, "GET " + quoted(key)));
  }
  return std::move(rs->body);
}

Expected<uint64_t> Client::get_to_fd(const std::string& key, int fd, uint64_t max_bytes) {
  // The error body of a failed GET must not land in the file: look first.
  auto info = head(key);
  if (!info) {
    return std::unexpected(info.error());
  }
  Request rq;
  rq.key = key;
  rq.sink_fd = fd;
  rq.max_body = static_cast<size_t>(max_bytes);
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 200) {
    return std::unexpected(Error{"GET " + quoted(key) + ": HTTP " + std::to_string(rs->status), 0});
  }
  return rs->body_bytes;
}

Expected<void> Client::remove(const std::string& key) {
  Request rq;
  rq.method = "DELETE";
  rq.key = key;
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 204 && rs->status != 200 && rs->status != 404) {
    return std::unexpected(to_error(*rs, "DELETE " + quoted(key)));
  }
  return {};
}

Expected<ListPage> Client::list(const std::string& prefix, const std::string& token,
                                unsigned max_keys, const std::string& delimiter) {
  Request rq;
  rq.query = {{"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(max_keys)}};
  if (!token.empty()) {
    rq.query.emplace_back("continuation-token", token);
  }
  if (!delimiter.empty()) {
    rq.query.emplace_back("delimiter", delimiter);
  }
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 200) {
    return std::unexpected(to_error(*rs, "LIST " + quoted(prefix)));
  }
  ListPage page;
  for (std::string_view block : xml_blocks(rs->body, "Contents")) {
    ListEntry e;
    e.key = xml_unescape(xml_text(block, "Key").value_or(""));
    e.size = std::strtoull(std::string(xml_text(block, "Size").value_or("0")).c_str(), nullptr, 10);
    e.etag = unquote(xml_unescape(xml_text(block, "ETag").value_or("")));
    e.last_modified = xml_unescape(xml_text(block, "LastModified").value_or(""));
    page.entries.push_back(std::move(e));
  }
  for (std::string_view block : xml_blocks(rs->body, "CommonPrefixes")) {
    page.common_prefixes.push_back(xml_unescape(xml_text(block, "Prefix").value_or("")));
  }
  if (xml_text(rs->body, "IsTruncated").value_or("false") == "true") {
    page.next_token = xml_unescape(xml_text(rs->body, "NextContinuationToken").value_or(""));
    if (page.next_token.empty()) {
      return fail("LIST " + quoted(prefix) + ": truncated without a continuation token");
    }
  }
  return page;
}

Expected<std::string> Client::create_multipart(const std::string& key,
                                               const std::map<std::string, std::string>& metadata) {
  Request rq;
  rq.method = "POST";
  rq.key = key;
  rq.query = {{"uploads", ""}};
  rq.headers.emplace_back("content-type", "application/octet-stream");
  add_metadata(rq.headers, metadata);
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 200) {
    return std::unexpected(to_error(*rs, "CreateMultipartUpload " + quoted(key)));
  }
  std::string id = xml_unescape(xml_text(rs->body, "UploadId").value_or(""));
  if (id.empty()) {
    return fail("CreateMultipartUpload " + quoted(key) + ": no UploadId in the answer");
  }
  return id;
}

Expected<std::string> Client::upload_part(const std::string& key, const std::string& upload_id,
                                          unsigned part, std::span<const std::byte> data) {
  return upload_part(key, upload_id, part, data, md5(data));
}

Expected<std::string> Client::upload_part(const std::string& key, const std::string& upload_id,
                                          unsigned part, std::span<const std::byte> data,
                                          const std::array<uint8_t, 16>& digest) {
  Request rq;
  rq.method = "PUT";
  rq.key = key;
  rq.body = data;
  rq.query = {{"partNumber", std::to_string(part)}, {"uploadId", upload_id}};
  rq.headers.emplace_back("content-md5", base64(digest));
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 200) {
    return std::unexpected(
        to_error(*rs, "UploadPart " + std::to_string(part) + " of " + quoted(key)));
  }
  std::string etag = unquote(rs->headers["etag"]);
  // The part's ETag is its MD5 (no server-side encryption with KMS keys on our uploads).
  if (etag != digest_hex(digest)) {
    return fail("UploadPart " + std::to_string(part) + " of " + quoted(key) +
                ": the server's ETag does not match the part's MD5");
  }
  return etag;
}

Expected<void> Client::complete_multipart(const std::string& key, const std::string& upload_id,
                                          const std::vector<std::string>& etags) {
  std::string xml = "<CompleteMultipartUpload>";
  for (size_t i = 0; i < etags.size(); ++i) {
    xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>\"" + etags[i] +
           "\"</ETag></Part>";
  }
  xml += "</CompleteMultipartUpload>";
  Request rq;
  rq.method = "POST";
  rq.key = key;
  rq.body = std::as_bytes(std::span(xml));
  rq.query = {{"uploadId", upload_id}};
  rq.headers.emplace_back("content-type", "application/xml");
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  // S3 may answer 200 with an <Error> body when the completion failed after it began.
  if (rs->status != 200 || xml_text(rs->body, "Code").has_value()) {
    return std::unexpected(to_error(*rs, "CompleteMultipartUpload " + quoted(key)));
  }
  return {};
}

Expected<void> Client::abort_multipart(const std::string& key, const std::string& upload_id) {
  Request rq;
  rq.method = "DELETE";
  rq.key = key;
  rq.query = {{"uploadId", upload_id}};
  auto rs = perform(rq);
  if (!rs) {
    return std::unexpected(rs.error());
  }
  if (rs->status != 204 && rs->status != 200 && rs->status != 404) {
    return std::unexpected(to_error(*rs, "AbortMultipartUpload " + quoted(key)));
  }
  return {};
}

std::string multipart_etag(const std::vector<std::array<uint8_t, 16>>& part_md5s) {
  std::vector<std::byte> all;
  all.reserve(part_md5s.size() * 16);
  for (const auto& m : part_md5s) {
    const auto b = std::as_bytes(std::span(m));
    all.insert(all.end(), b.begin(), b.end());
  }
  return digest_hex(md5(all)) + "-" + std::to_string(part_md5s.size());
}

namespace {

Expected<size_t> pread_full(int fd, std::span<std::byte> buf, uint64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n =
        ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail_errno("Failed to read the file to upload", errno);
    }
    if (n == 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

} // namespace

uint64_t part_size_for(uint64_t size) {
  uint64_t part_size = k_part_size;
  while (size / part_size >= k_max_parts) {
    part_size *= 2;
  }
  return part_size;
}

unsigned parts_in_flight(const ClientOptions& options, uint64_t size, uint64_t part_size) {
  const uint64_t parts = (size + part_size - 1) / part_size;
  uint64_t n = std::clamp<uint64_t>(options.parts_in_flight, 1, k_max_parts_in_flight);
  n = std::min(n, std::max<uint64_t>(1, k_upload_memory / part_size));
  return static_cast<unsigned>(std::max<uint64_t>(1, std::min(n, parts)));
}

Expected<FileEtags> file_etags(int fd, uint64_t size) {
  const uint64_t part_size = part_size_for(size);
  // Read in pieces of at most 1 MiB, whatever the part size: memory stays flat.
  std::vector<std::byte> buf(static_cast<size_t>(std::min<uint64_t>(part_size, 1 << 20)));
  std::vector<std::array<uint8_t, 16>> md5s;
  Md5 whole;
  uint64_t off = 0;
  do {
    const uint64_t part_end = std::min(size, off + part_size);
    Md5 part;
    while (off < part_end) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), part_end - off));
      auto n = pread_full(fd, std::span(buf.data(), want), off);
      if (!n) {
        return std::unexpected(n.error());
      }
      if (*n != want) {
        return fail("The file shrank while its ETag was computed");
      }
      part.update(std::span(buf.data(), want));
      whole.update(std::span(buf.data(), want));
      off += want;
    }
    md5s.push_back(part.finish());
  } while (off < size);
  FileEtags etags;
  etags.md5 = digest_hex(whole.finish());
  etags.upload = size <= part_size ? etags.md5 : multipart_etag(md5s);
  return etags;
}

Expected<std::string> Client::upload_file(const std::string& key, int fd, uint64_t size,
                                          const std::map<std::string, std::string>& metadata) {
  const uint64_t part_size = part_size_for(size);
  std::string expected;
  if (size <= part_size) {
    std::vector<std::byte> buf(size);
    auto n = pread_full(fd, buf, 0);
    if (!n) {
      return std::unexpected(n.error());
    }
    if (*n != size) {
      return fail("The file to upload as " + quoted(key) + " shrank while it was read");
    }
    auto etag = put(key, buf, metadata);
    if (!etag) {
      return std::unexpected(etag.error());
    }
    expected = digest_hex(md5(buf));
  } else {
    auto id = create_multipart(key, metadata);
    if (!id) {
      return std::unexpected(id.error());
    }
    auto give_up = [&](const Error& e) -> std::unexpected<Error> {
      // Best effort: a lifecycle rule for incomplete uploads removes what this cannot. The
      // error to report is the one that made us give up, not the abort's.
      S3Error cause = m_last;
      (void)abort_multipart(key, *id);
      m_last = std::move(cause);
      return std::unexpected(e);
    };
    const uint64_t parts = (size + part_size - 1) / part_size;
    const unsigned in_flight = parts_in_flight(m_options, size, part_size);
    std::vector<std::string> etags(parts);
    std::vector<std::array<uint8_t, 16>> md5s(parts);
    // The other connections' clients and every sender's buffer, made here: an allocation that
    // fails throws before any thread runs. Each connection, this one included, gets its share
    // of the rate limit, so together they keep to it (fewer, should some thread not start, keep
    // below it). This client's own share lasts as long as the upload.
    ClientOptions shared = m_options;
    shared.max_send_bytes_per_second =
        m_options.max_send_bytes_per_second == 0
            ? 0
            : std::max<uint64_t>(1, m_options.max_send_bytes_per_second / in_flight);
    std::vector<Client> clients;
    clients.reserve(in_flight - 1);
    for (unsigned i = 1; i < in_flight; ++i) {
      clients.emplace_back(shared);
    }
    std::vector<std::vector<std::byte>> bufs(
        in_flight, std::vector<std::byte>(static_cast<size_t>(part_size)));
    std::atomic<uint64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    std::optional<Error> error; // the first failure, and its S3 error
    S3Error cause;
    auto fail_with = [&](Error e, const S3Error& last) {
      const std::lock_guard lock(mu);
      if (!failed.exchange(true)) {
        error = std::move(e);
        cause = last;
      }
    };
    auto send_parts = [&](Client& client, std::vector<std::byte>& buf) {
      for (uint64_t i = next++; i < parts && !failed; i = next++) {
        const uint64_t off = i * part_size;
        const size_t want = static_cast<size_t>(std::min(part_size, size - off));
        auto n = pread_full(fd, std::span(buf.data(), want), off);
        Expected<std::string> etag = std::unexpected(Error{});
        if (!n) {
          etag = std::unexpected(n.error());
        } else if (*n != want) {
          etag = fail("The file to upload as " + quoted(key) + " shrank while it was read");
        } else {
          const std::span<const std::byte> part(buf.data(), want);
          md5s[i] = md5(part);
          etag = client.upload_part(key, *id, static_cast<unsigned>(i + 1), part, md5s[i]);
        }
        if (!etag) {
          fail_with(etag.error(), client.m_last);
          return;
        }
        etags[i] = std::move(*etag);
      }
    };
    // Nothing may leave a sender's thread: an exception there would end the process.
    auto send = [&](Client& client, std::vector<std::byte>& buf) noexcept {
      try {
        send_parts(client, buf);
      } catch (const std::exception& e) {
        fail_with(Error{std::string("Failed to send a part: ") + e.what(), 0}, S3Error{});
      }
    };
    {
      std::vector<std::jthread> threads; // joined when the block ends, however it ends
      threads.reserve(in_flight - 1);
      const uint64_t full_rate =
          std::exchange(m_options.max_send_bytes_per_second, shared.max_send_bytes_per_second);
      try {
        for (unsigned i = 1; i < in_flight; ++i) {
          threads.emplace_back(send, std::ref(clients[i - 1]), std::ref(bufs[i]));
        }
      } catch (const std::exception&) {
        // No thread to be had (a task limit, no memory): the parts go over the connections that
        // started.
      }
      send(*this, bufs[0]);
      m_options.max_send_bytes_per_second = full_rate;
    }
    if (error) {
      m_last = cause;
      return give_up(*error);
    }
    if (auto c = complete_multipart(key, *id, etags); !c) {
      return give_up(c.error());
    }
    expected = multipart_etag(md5s);
  }
  // A 200 is not proof: the object must be there, with our size and ETag.
  auto info = head(key);
  if (!info) {
    return fail("Uploaded " + quoted(key) + " but HEAD failed: " + info.error().message);
  }
  // Some servers (s3rver) give a multipart object the MD5 of the whole as its ETag: only then
  // is the file read and hashed again.
  bool same = info->size == size && info->etag == expected;
  if (!same && info->size == size && size > part_size) {
    auto etags = file_etags(fd, size);
    same = etags && info->etag == etags->md5;
  }
  if (!same) {
    return fail("Uploaded " + quoted(key) + " but the server holds " + std::to_string(info->size) +
                " bytes with ETag " + quoted(info->etag) + ", not " + std::to_string(size) +
                " bytes with " + quoted(expected));
  }
  return info->etag;
}

} // namespace common::s3
