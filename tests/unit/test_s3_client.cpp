// The S3 client's pure parts: s3:// URLs, the XML S3 answers in (hostile text included), the
// multipart ETag, and the credentials file's rules.
#include "common/s3/client.hpp"
#include "common/s3/credentials.hpp"
#include "common/s3/sigv4.hpp"
#include "common/s3/xml.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace common::s3;

TEST_CASE("s3:// URLs", "[s3]") {
  auto u = parse_bucket_url("s3://crashes/fleet/eu/");
  REQUIRE(u);
  CHECK(u->bucket == "crashes");
  CHECK(u->prefix == "fleet/eu");
  auto bare = parse_bucket_url("s3://crashes");
  REQUIRE(bare);
  CHECK(bare->prefix.empty());
  CHECK_FALSE(parse_bucket_url("https://crashes/x"));
  CHECK_FALSE(parse_bucket_url("s3://Bad_Bucket/x"));
  CHECK_FALSE(parse_bucket_url("s3://ab"));
}

TEST_CASE("XML: elements, repeated blocks, entities", "[s3]") {
  const std::string xml =
      "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3\"><IsTruncated>true"
      "</IsTruncated><Contents><Key>a&amp;b&#x2F;c</Key><Size>12</Size><ETag>&quot;x&quot;"
      "</ETag></Contents><Contents><Key>d</Key><Size>3</Size></Contents>"
      "<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>";
  CHECK(xml_text(xml, "IsTruncated") == "true");
  const auto blocks = xml_blocks(xml, "Contents");
  REQUIRE(blocks.size() == 2);
  CHECK(xml_unescape(*xml_text(blocks[0], "Key")) == "a&b/c");
  CHECK(xml_unescape(*xml_text(blocks[0], "ETag")) == "\"x\"");
  CHECK(xml_text(blocks[1], "ETag") == std::nullopt);
  CHECK(xml_text(xml, "Missing") == std::nullopt);
  // Hostile text: unterminated elements and references yield nothing, or the text as it is.
  CHECK(xml_text("<Key>abc", "Key") == std::nullopt);
  CHECK(xml_blocks("<Contents><Contents>", "Contents").empty());
  CHECK(xml_unescape("&#0;&#xD800;&#99999999999;&bogus;&") == "&#0;&#xD800;&#99999999999;&bogus;&");
  CHECK(xml_text("<Keys>1</Keys><Key>2</Key>", "Key") == "2");
}

TEST_CASE("Multipart ETag: MD5 of the parts' MD5s and the count", "[s3]") {
  const std::string a(5, 'a');
  const std::string b(3, 'b');
  const auto ma = md5(std::as_bytes(std::span(a.data(), a.size())));
  const auto mb = md5(std::as_bytes(std::span(b.data(), b.size())));
  std::string both(reinterpret_cast<const char*>(ma.data()), 16);
  both.append(reinterpret_cast<const char*>(mb.data()), 16);
  const auto whole = md5(std::as_bytes(std::span(both.data(), both.size())));
  std::string hex;
  for (auto byte : whole) {
    static constexpr char k[] = "0123456789abcdef";
    hex += k[byte >> 4];
    hex += k[byte & 15];
  }
  CHECK(multipart_etag({ma, mb}) == hex + "-2");
}

TEST_CASE("A file's ETags: its MD5 up to a part, the multipart ETag or the MD5 above", "[s3]") {
  // MD5 fed piece by piece is MD5 of the whole.
  const std::string text = "The quick brown fox jumps over the lazy dog";
  Md5 pieces;
  pieces.update(std::as_bytes(std::span(text.data(), 10)));
  pieces.update(std::as_bytes(std::span(text.data() + 10, text.size() - 10)));
  const auto whole = pieces.finish();
  CHECK(digest_hex(whole) == "9e107d9d372bb6826bd81d3542a419d6");

  const int fd = ::memfd_create("etag", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  std::string body(k_part_size + 12345, '\0');
  for (size_t i = 0; i < body.size(); ++i) {
    body[i] = static_cast<char>((i * 7919) >> 5);
  }
  REQUIRE(::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()));
  // Up to one part: the MD5 of the bytes, whichever way it went up.
  const auto first = std::as_bytes(std::span(body.data(), k_part_size));
  const auto one = file_etags(fd, k_part_size);
  REQUIRE(one);
  CHECK(one->upload == digest_hex(md5(first)));
  CHECK(one->md5 == one->upload);
  const auto none = file_etags(fd, 0);
  REQUIRE(none);
  CHECK(none->upload == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(none->md5 == none->upload);
  // Above: the ETag of the parts' MD5s, as upload_file() leaves it by S3's rule, or the MD5 of
  // the whole, as some servers give a multipart upload; nothing else matches.
  const auto rest = std::as_bytes(std::span(body.data() + k_part_size, 12345));
  const auto big = file_etags(fd, body.size());
  REQUIRE(big);
  CHECK(big->upload == multipart_etag({md5(first), md5(rest)}));
  CHECK(big->md5 == digest_hex(md5(std::as_bytes(std::span(body)))));
  CHECK(big->matches(big->upload));
  CHECK(big->matches(big->md5));
  CHECK_FALSE(big->matches(digest_hex(md5(first))));
  CHECK_FALSE(big->matches(""));
  CHECK_FALSE(big->matches(digest_hex(md5(first)) + "-2"));
  CHECK(part_size_for(body.size()) == k_part_size);
  CHECK(part_size_for(k_part_size * k_max_parts) == 2 * k_part_size);
  // A file shorter than said is an error, not an ETag.
  CHECK_FALSE(file_etags(fd, body.size() + 1));
  ::close(fd);
}

TEST_CASE("Credentials file: profiles and the permission rule", "[s3][credentials]") {
  const std::string text = "# c\n[other]\naws_access_key_id = X\naws_secret_access_key = Y\n"
                           "[default]\naws_access_key_id=AK\r\naws_secret_access_key = SK \n"
                           "aws_session_token = TOK\n";
  auto c = parse_credentials(text, "default", "f");
  REQUIRE(c);
  CHECK(c->access_key == "AK");
  CHECK(c->secret_key == "SK");
  CHECK(c->session_token == "TOK");
  auto o = parse_credentials(text, "other", "f");
  REQUIRE(o);
  CHECK(o->access_key == "X");
  CHECK_FALSE(parse_credentials(text, "none", "f"));
  auto bad = parse_credentials("[default]\naws_secret_access_key SECRETVALUE\n", "default", "f");
  REQUIRE_FALSE(bad);
  // A malformed line may be a secret: the message never quotes it.
  CHECK(bad.error().message.find("SECRETVALUE") == std::string::npos);

  const auto dir = std::filesystem::temp_directory_path() / ("pc-cred-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "credentials").string();
  { std::ofstream(path) << text; }
  chmod(path.c_str(), 0600);
  CHECK(load_credentials_file(path, "default"));
  chmod(path.c_str(), 0644);
  auto refused = load_credentials_file(path, "default");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("Refusing credentials") != std::string::npos);
  chmod(path.c_str(), 0640);
  CHECK_FALSE(load_credentials_file(path, "default")); // group-readable, and not root's
  std::filesystem::create_symlink(path, dir / "link");
  chmod(path.c_str(), 0600);
  CHECK_FALSE(load_credentials_file((dir / "link").string(), "default"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("Credentials file: root's with the reader's group, mode 0640", "[s3][credentials]") {
  // The uploader's unit reads /etc/process-core/s3-credentials as root:process-core 0640 where
  // LoadCredential= is not used. Needs root to make such a file and a reader of another uid.
  if (geteuid() != 0) {
    SUCCEED("needs root");
    return;
  }
  constexpr gid_t k_gid = 65534;
  const auto dir =
      std::filesystem::temp_directory_path() / ("pc-cred-group-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  chmod(dir.c_str(), 0755);
  const std::string path = (dir / "credentials").string();
  { std::ofstream(path) << "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n"; }
  // Each case as uid/gid 65534 in a child: whether it loads (bit set) or is refused.
  auto loads_as_nobody = [&](gid_t file_gid, mode_t mode) {
    REQUIRE(chown(path.c_str(), 0, file_gid) == 0);
    REQUIRE(chmod(path.c_str(), mode) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (setgroups(0, nullptr) != 0 || setresgid(k_gid, k_gid, k_gid) != 0 ||
          setresuid(65534, 65534, 65534) != 0) {
        _exit(2);
      }
      auto c = load_credentials_file(path, "default");
      _exit(c && c->access_key == "AK" ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) != 2);
    return WEXITSTATUS(status) == 0;
  };
  CHECK(loads_as_nobody(k_gid, 0640));
  CHECK(loads_as_nobody(k_gid, 0440));
  CHECK_FALSE(loads_as_nobody(k_gid, 0660)); // the group may change it
  CHECK_FALSE(loads_as_nobody(k_gid, 0644)); // anyone may read it
  CHECK_FALSE(loads_as_nobody(0, 0640));     // root's group, not the reader's
  std::filesystem::remove_all(dir);
}

TEST_CASE("Parts in flight: as asked, within the parts there are and the memory bound", "[s3]") {
  ClientOptions options;
  const uint64_t big = 100 * k_part_size;
  options.parts_in_flight = 4;
  CHECK(parts_in_flight(options, big, k_part_size) == 4);
  // Never more than there are parts, never none.
  CHECK(parts_in_flight(options, 2 * k_part_size, k_part_size) == 2);
  CHECK(parts_in_flight(options, k_part_size + 1, k_part_size) == 2);
  CHECK(parts_in_flight(options, 0, k_part_size) == 1);
  // What the options ask, within 1 to k_max_parts_in_flight.
  options.parts_in_flight = 0;
  CHECK(parts_in_flight(options, big, k_part_size) == 1);
  options.parts_in_flight = 1000;
  CHECK(parts_in_flight(options, big, k_part_size) ==
        std::min<uint64_t>(k_max_parts_in_flight, k_upload_memory / k_part_size));
  // The whole documented range fits the memory bound at the usual part size.
  options.parts_in_flight = k_max_parts_in_flight;
  CHECK(parts_in_flight(options, big, k_part_size) == k_max_parts_in_flight);
  // Larger parts (files above k_part_size * k_max_parts): fewer at once, at least one.
  options.parts_in_flight = 16;
  CHECK(parts_in_flight(options, big * 1000, 4 * k_part_size) ==
        k_upload_memory / (4 * k_part_size));
  CHECK(parts_in_flight(options, big * 1000, 2 * k_upload_memory) == 1);
}
