// An S3 client over libcurl with our SigV4 signer: PUT, HEAD, GET, ListObjectsV2, multipart
// uploads (Content-MD5 and a signed x-amz-content-sha256 on every part, the result verified by
// HEAD) and abort. Path-style or virtual-hosted-style addressing; TLS always verified, with the
// system's CAs or a configured CA file. Every response body read into memory is bounded.
#pragma once

#include "common/base/error.hpp"
#include "common/s3/credentials.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace common::s3 {

// s3://BUCKET/PREFIX, split. The prefix has no leading or trailing '/'.
struct BucketUrl {
  std::string bucket;
  std::string prefix;
};
// Parses an s3:// URL; the bucket must be a DNS-style bucket name.
Expected<BucketUrl> parse_bucket_url(std::string_view url);

enum class Addressing { path, virtual_host };

struct ClientOptions {
  std::string endpoint; // "https://host[:port]" or "http://…"; empty: AWS for the region
  std::string region = "us-east-1";
  std::string bucket;
  Addressing addressing = Addressing::path;
  std::string ca_file; // empty: the system's CAs
  std::string proxy;   // empty: none (the environment's proxy variables are ignored)
  uint64_t max_send_bytes_per_second = 0; // 0: no limit; shared by the parts in flight
  // Parts of one multipart upload sent at once, each over a connection of its own and from a
  // buffer of its own (memory: this many parts, within k_upload_memory).
  unsigned parts_in_flight = 1;
  unsigned timeout_seconds = 300; // a whole request, from connecting to the last byte
  Credentials credentials;
};

// One object's metadata as HEAD returns it.
struct ObjectInfo {
  uint64_t size = 0;
  std::string etag;                            // without quotes
  std::map<std::string, std::string> metadata; // x-amz-meta-* names without the prefix
};

// One entry of a listing.
struct ListEntry {
  std::string key;
  uint64_t size = 0;
  std::string etag;
  std::string last_modified;
};
struct ListPage {
  std::vector<ListEntry> entries;
  std::vector<std::string> common_prefixes;
  std::string next_token; // empty: this was the last page
};

// A failed request: the HTTP status (0 when none was received) and S3's error code.
struct S3Error {
  long status = 0;
  std::string code; // "NoSuchKey", "SignatureDoesNotMatch"…
  std::string message;
};

// Objects larger than this go up as multipart uploads, in parts of k_part_size (S3 wants at
// least 5 MiB a part but the last, and at most 10,000 parts: 80 GiB at 8 MiB, so the part grows
// for larger files).
inline constexpr uint64_t k_part_size = 8ULL << 20;
inline constexpr uint64_t k_max_parts = 10000;
// At most this much memory holds parts in flight (one part is always sent, however large).
inline constexpr uint64_t k_upload_memory = 128ULL << 20;
inline constexpr unsigned k_max_parts_in_flight = 16;
// The largest response body read into memory (listings, error bodies, small objects).
inline constexpr size_t k_max_body_bytes = 32 << 20;

class Client {
public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  const ClientOptions& options() const { return m_options; }

  // HEAD: the object's size, ETag and metadata; an error with sys_errno ENOENT when absent.
  Expected<ObjectInfo> head(const std::string& key);
  // PUT of a small object held in memory, with Content-MD5 and x-amz-meta-* headers.
  Expected<std::string> put(const std::string& key, std::span<const std::byte> data,
                            const std::map<std::string, std::string>& metadata,
                            std::string_view content_type = "application/octet-stream");
  // GET into memory, at most `max_bytes`; ENOENT when absent.
  Expected<std::string> get(const std::string& key, size_t max_bytes = k_max_body_bytes);
  // GET into `fd` (written from its current offset), at most `max_bytes` (a larger body is an
  // error); ENOENT when absent.
  Expected<uint64_t> get_to_fd(const std::string& key, int fd, uint64_t max_bytes = UINT64_MAX);
  // DELETE (absent is success).
  Expected<void> remove(const std::string& key);
  // ListObjectsV2 of `prefix`, one page of at most `max_keys`; `delimiter` groups by it.
  Expected<ListPage> list(const std::string& prefix, const std::string& token,
                          unsigned max_keys = 1000, const std::string& delimiter = {});

  // Uploads the `size` bytes of `fd` from offset 0 to `key`: one PUT when small, else a
  // multipart upload read part by part, parts_in_flight() at once (memory is that many parts
  // whatever the size). Then HEAD must
  // show the size and an ETag computed locally (the MD5 or the multipart ETag "md5-of-md5s-N",
  // or the whole MD5 for a multipart upload: file_etags()); otherwise it fails, and a multipart
  // upload given up is aborted. Returns the server's ETag.
  Expected<std::string> upload_file(const std::string& key, int fd, uint64_t size,
                                    const std::map<std::string, std::string>& metadata);

  // The parts of a multipart upload, for callers (and tests) that drive one themselves.
  Expected<std::string> create_multipart(const std::string& key,
                                         const std::map<std::string, std::string>& metadata);
  Expected<std::string> upload_part(const std::string& key, const std::string& upload_id,
                                    unsigned part, std::span<const std::byte> data);
  // The same with the part's MD5 already computed: it is the Content-MD5 header, the ETag the
  // server must answer, and a term of the object's ETag, hashed once for all three.
  Expected<std::string> upload_part(const std::string& key, const std::string& upload_id,
                                    unsigned part, std::span<const std::byte> data,
                                    const std::array<uint8_t, 16>& md5);
  Expected<void> complete_multipart(const std::string& key, const std::string& upload_id,
                                    const std::vector<std::string>& etags);
  Expected<void> abort_multipart(const std::string& key, const std::string& upload_id);

  // The S3 error of the last request (status and code; none when it did not fail in S3 or
  // the transport), for the caller's counters and exit statuses.
  const S3Error& last_error() const { return m_last; }

private:
  struct Request;
  struct Response;
  Expected<Response> perform(Request& request);
  Error to_error(const Response& response, std::string_view what);

  ClientOptions m_options;
  std::string m_scheme_host; // "https://host:port"
  std::string m_host;        // the Host header
  std::string m_base_path;   // "/bucket" (path style) or ""
  void* m_curl = nullptr;
  S3Error m_last;
};

// The part size upload_file() uses for a file of `size` bytes.
uint64_t part_size_for(uint64_t size);
// How many of a file's parts of `part_size` upload_file() sends at once: what the options ask
// (1 to k_max_parts_in_flight), fewer when that many would not fit in k_upload_memory, at
// least one, never more than there are parts.
unsigned parts_in_flight(const ClientOptions& options, uint64_t size, uint64_t part_size);

// The ETags a server may hold for the `size` bytes of `fd` from offset 0: `upload`, the one
// upload_file() leaves by S3's rule (the hex MD5, or the multipart ETag when the file is larger
// than one part), and `md5`, the hex MD5 of the whole, which some S3 implementations (s3rver,
// older gateways) give a multipart upload as well. Reads the file once, in small pieces.
struct FileEtags {
  std::string upload;
  std::string md5;
  bool matches(std::string_view etag) const { return etag == upload || etag == md5; }
};
Expected<FileEtags> file_etags(int fd, uint64_t size);

// The multipart ETag of parts with these MD5s: hex MD5 of their concatenation, "-", their count.
std::string multipart_etag(const std::vector<std::array<uint8_t, 16>>& part_md5s);

} // namespace common::s3
