#include "exporter/basic_auth.hpp"
#include "exporter/http_server.hpp"
#include "exporter/metrics.hpp"
#include "exporter/process_metrics.hpp"
#include "exporter/serializer.hpp"
#include "exporter/web_config.hpp"

#include <catch2/catch.hpp>
#include <prometheus/text_serializer.h>

#include <crypt.h>
#include <zlib.h>

#include <chrono>
#include <set>
#include <sstream>

using namespace exporter;

TEST_CASE("web config: the exporter-toolkit format", "[exporter][web]") {
  SECTION("TLS and basic auth") {
    auto c = parse_web_config(
        "tls_server_config:\n"
        "  cert_file: /etc/pc/cert.pem\n"
        "  key_file: /etc/pc/key.pem\n"
        "basic_auth_users:\n"
        "  prometheus: $2y$10$abcdefghijklmnopqrstuuJ1a4gS8V1YF3v7a1cL3wq5nP8Yb2Ym\n",
        "web.yml");
    REQUIRE(c);
    CHECK(c->tls());
    CHECK(c->cert_file == "/etc/pc/cert.pem");
    CHECK(c->key_file == "/etc/pc/key.pem");
    REQUIRE(c->users.size() == 1);
    CHECK(c->users.at("prometheus").starts_with("$2y$10$"));
  }
  SECTION("client certificates, versions and cipher suites") {
    auto c = parse_web_config("tls_server_config:\n"
                              "  cert_file: /c\n  key_file: /k\n  client_ca_file: /ca\n"
                              "  client_auth_type: RequireAndVerifyClientCert\n"
                              "  min_version: TLS12\n  max_version: TLS12\n"
                              "  cipher_suites:\n"
                              "    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n"
                              "    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n",
                              "web.yml");
    REQUIRE(c);
    CHECK(c->client_auth == ClientAuth::require_and_verify);
    CHECK(c->client_ca_file == "/ca");
    CHECK(c->min_version == TlsVersion::tls12);
    CHECK(c->max_version == TlsVersion::tls12);
    REQUIRE(c->cipher_suites.size() == 2);
    auto p = gnutls_priorities(*c);
    REQUIRE(p);
    CHECK(*p == "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:-MAC-ALL:-KX-ALL:+ECDHE-ECDSA:"
                "+AES-128-GCM:+AEAD:+ECDHE-RSA:+AES-256-GCM");
    WebConfig defaults;
    defaults.cert_file = "/c";
    CHECK(gnutls_priorities(defaults).value() == "NORMAL:-VERS-ALL:+VERS-TLS1.2:+VERS-TLS1.3");
  }
  SECTION("an empty file is plain HTTP") {
    auto c = parse_web_config("", "web.yml");
    REQUIRE(c);
    CHECK_FALSE(c->tls());
    CHECK(c->users.empty());
  }
  SECTION("what is not implemented is refused, not ignored") {
    // GnuTLS asks for client certificates only with a CA list to send.
    CHECK_FALSE(parse_web_config("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                 "  client_auth_type: RequireAndVerifyClientCert\n",
                                 "w"));
    CHECK_FALSE(parse_web_config("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                 "  curve_preferences: [X25519]\n",
                                 "w"));
    CHECK_FALSE(parse_web_config("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                 "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
                                 "w"));
    CHECK_FALSE(parse_web_config("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                 "  min_version: TLS13\n  max_version: TLS12\n",
                                 "w"));
    CHECK_FALSE(parse_web_config("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                 "  min_version: SSL30\n",
                                 "w"));
    CHECK_FALSE(parse_web_config("http_server_config:\n  http2: false\n", "w"));
    CHECK_FALSE(parse_web_config("tls_server_config:\n  cert_file: a\n", "w"));
    auto plain = parse_web_config("basic_auth_users:\n  u: plaintext\n", "w");
    REQUIRE_FALSE(plain);
    CHECK_THAT(plain.error().message, Catch::Contains("not a bcrypt hash"));
  }
  SECTION("malformed YAML names the line") {
    auto bad = parse_web_config("basic_auth_users:\n  u: [\n", "w");
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().message, Catch::Contains("line"));
    CHECK_FALSE(parse_web_config("- a\n- b\n", "w"));
  }
}

TEST_CASE("web config: bcrypt passwords", "[exporter][web]") {
  // Made with Python's crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)).
  const std::string hash = "$2b$04$PfLrS4GbknNfjKTR2cSX8eHs7Jj4hhEjB6pvWm/gEfo76II7lJ9pi";
  CHECK(password_matches("s3cret", hash));
  CHECK_FALSE(password_matches("s3cret ", hash));
  CHECK_FALSE(password_matches("", hash));
  CHECK_FALSE(password_matches(std::string("s3cret\0x", 8), hash));
  // Other crypt(3) formats (and DES, which ignores everything after 8 characters) are refused.
  CHECK_FALSE(password_matches(
      "s3cret",
      "$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy."
      "g."));
}

TEST_CASE("listen addresses", "[exporter][web]") {
  auto v4 = parse_listen_address("127.0.0.1:19464");
  REQUIRE(v4);
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == "19464");
  auto v6 = parse_listen_address("[::1]:0");
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->port == "0");
  auto any = parse_listen_address(":19464");
  REQUIRE(any);
  CHECK(any->host.empty());
  CHECK_FALSE(parse_listen_address("127.0.0.1"));
  CHECK_FALSE(parse_listen_address("::1:19464"));
  CHECK_FALSE(parse_listen_address("[::1:19464"));
  CHECK_FALSE(parse_listen_address("host:99999"));
  CHECK_FALSE(parse_listen_address("host:-1"));
  CHECK_FALSE(parse_listen_address("host:"));
}

TEST_CASE("base64 of basic auth", "[exporter][web]") {
  CHECK(base64_decode("dXNlcjpwYXNz").value() == "user:pass");
  CHECK(base64_decode("dTpw").value() == "u:p");
  CHECK(base64_decode("dTo=").value() == "u:");
  CHECK(base64_decode("dQ==").value() == "u");
  CHECK(base64_decode("").value().empty());
  CHECK_FALSE(base64_decode("dQ="));
  CHECK_FALSE(base64_decode("d=Q="));
  CHECK_FALSE(base64_decode("dQ==dQ=="));
  CHECK_FALSE(base64_decode("d*Q="));
}

TEST_CASE("process metrics from /proc/<pid>/stat", "[exporter][web]") {
  // A command name with ") " in it must not shift the fields.
  const std::string stat = "15774 (a) b) R 15667 15667 6143 0 -1 4194304 100 0 0 0 250 50 0 0 20 "
                           "0 1 0 66752 3133440 390 18446744073709551615 94827395690496";
  ProcStat st;
  REQUIRE(parse_proc_stat(stat, 100, st));
  CHECK(st.cpu_seconds == Approx(3.0));
  CHECK(st.start_seconds == Approx(667.52));
  CHECK(st.virtual_bytes == 3133440);
  CHECK(st.resident_pages == 390);
  CHECK_FALSE(parse_proc_stat("15774 (cat) R 1 2", 100, st));
  CHECK_FALSE(parse_proc_stat("no parenthesis", 100, st));
  CHECK_FALSE(parse_proc_stat(stat, 0, st));

  auto families = process_families();
  std::vector<std::string> names;
  for (const auto& f : families) {
    names.push_back(f.name);
  }
  CHECK_THAT(names, Catch::VectorContains(std::string("process_cpu_seconds_total")));
  CHECK_THAT(names, Catch::VectorContains(std::string("process_resident_memory_bytes")));
  CHECK_THAT(names, Catch::VectorContains(std::string("process_open_fds")));
  CHECK_THAT(names, Catch::VectorContains(std::string("process_max_fds")));
  CHECK_THAT(names, Catch::VectorContains(std::string("process_start_time_seconds")));
}

namespace {

// Made with Python's crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)).
const std::string k_hash = "$2b$04$PfLrS4GbknNfjKTR2cSX8eHs7Jj4hhEjB6pvWm/gEfo76II7lJ9pi";

std::string basic(std::string_view credentials) {
  static constexpr char k_b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "Basic ";
  for (size_t i = 0; i < credentials.size(); i += 3) {
    auto byte = [&](size_t at) -> unsigned {
      return at < credentials.size() ? static_cast<unsigned char>(credentials[at]) : 0U;
    };
    const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += k_b64[(v >> 18) & 63];
    out += k_b64[(v >> 12) & 63];
    out += i + 1 < credentials.size() ? k_b64[(v >> 6) & 63] : '=';
    out += i + 2 < credentials.size() ? k_b64[v & 63] : '=';
  }
  return out;
}

} // namespace

TEST_CASE("basic auth: results, failure limit, remembered credentials", "[exporter][web]") {
  BasicAuth auth({{"prometheus", k_hash}});
  const auto t0 = BasicAuth::Clock::now();
  CHECK(auth.enabled());
  CHECK_FALSE(BasicAuth({}).enabled());
  CHECK(auth.check(basic("prometheus:s3cret").c_str(), "a", t0) == AuthResult::ok);
  CHECK(auth.check(nullptr, "b", t0) == AuthResult::denied);
  CHECK(auth.check("Bearer x", "b", t0) == AuthResult::denied);
  CHECK(auth.check("Basic !!!!", "b", t0) == AuthResult::denied);
  CHECK(auth.check(basic(std::string_view("prometheus:s3cret\0x", 19)).c_str(), "c", t0) ==
        AuthResult::denied);
  // Without a user name no bcrypt is spent and nothing counts as a failure; with one, five
  // failures from "b" make the next attempt throttled before bcrypt, right or wrong.
  for (int i = 0; i < 5; ++i) {
    CHECK(auth.check(basic(i % 2 ? "nobody:s3cret" : "prometheus:x").c_str(), "b", t0) ==
          AuthResult::denied);
  }
  CHECK(auth.check(basic("prometheus:wrong").c_str(), "b", t0) == AuthResult::throttled);
  CHECK(auth.check(basic("nobody:x").c_str(), "b", t0) == AuthResult::throttled);
  // Credentials verified before (by "a") are remembered and pass even for a throttled client.
  CHECK(auth.check(basic("prometheus:s3cret").c_str(), "b", t0) == AuthResult::ok);
  // The limit ends with its window; a success then clears the count.
  const auto later = t0 + std::chrono::seconds(61);
  CHECK(auth.check(basic("prometheus:wrong").c_str(), "b", later) == AuthResult::denied);
  // A re-read user list forgets what was remembered.
  auth.set_users({{"other", k_hash}});
  CHECK(auth.check(basic("prometheus:s3cret").c_str(), "d", t0) == AuthResult::denied);
  CHECK(auth.check(basic("other:s3cret").c_str(), "d", t0) == AuthResult::ok);
}

TEST_CASE("basic auth: unknown users cost the same bcrypt", "[exporter][web]") {
  // A cost-8 hash (about 20 ms): a refusal without bcrypt would be 1000 times faster.
  const std::string slow = crypt("s3cret", "$2b$08$abcdefghijklmnopqrstuu");
  BasicAuth auth({{"prometheus", slow}});
  auto median = [&](const std::string& header) {
    std::vector<double> t;
    for (int i = 0; i < 3; ++i) {
      const auto start = std::chrono::steady_clock::now();
      CHECK(auth.check(header.c_str(), "client" + std::to_string(i) + header,
                       BasicAuth::Clock::now()) == AuthResult::denied);
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(t.begin(), t.end());
    return t[1];
  };
  const double known = median(basic("prometheus:wrong"));
  const double unknown = median(basic("nobody:wrong"));
  CHECK(unknown / known > 0.33);
  CHECK(unknown / known < 3);
}

namespace {

Snapshot sample_snapshot(size_t series) {
  CrashState st(0, 0);
  for (size_t i = 0; i < series; ++i) {
    common::SeriesKey key{"host-" + std::to_string(i % 7),
                          "/usr/bin/\"odd\\\nexe" + std::to_string(i), i % 2 ? "SEGV" : "ABRT",
                          i % 3 == 0};
    st.add_record(i + 1, 0, key, 1700000000 + static_cast<int64_t>(i), 100, 200);
  }
  st.settle();
  return st.snapshot();
}

std::set<std::string> lines_of(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.insert(line);
  }
  return out;
}

std::string gunzip(const std::string& data) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
  std::string out;
  char buf[65536];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  int r = Z_OK;
  while (r == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    r = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  }
  inflateEnd(&z);
  CHECK(r == Z_STREAM_END);
  return out;
}

} // namespace

TEST_CASE("metrics stream: the text format prometheus-cpp writes", "[exporter][web]") {
  const Snapshot snap = sample_snapshot(3000);
  const std::string expected = prometheus::TextSerializer().Serialize(to_families(snap));
  MetricsStream stream(snap, {}, Format::text, Compression::none);
  const std::string got = stream.read_all();
  CHECK(lines_of(got) == lines_of(expected));
  CHECK(got.size() == expected.size());

  SECTION("in small reads") {
    MetricsStream s(snap, {}, Format::text, Compression::none);
    std::string pieces;
    char buf[7];
    for (long n; (n = s.read(buf, sizeof buf)) > 0;) {
      pieces.append(buf, static_cast<size_t>(n));
    }
    CHECK(pieces == got);
  }
  SECTION("gzip") {
    MetricsStream s(snap, {}, Format::text, Compression::gzip);
    std::string compressed;
    char buf[1000];
    for (long n; (n = s.read(buf, sizeof buf)) > 0;) {
      compressed.append(buf, static_cast<size_t>(n));
    }
    CHECK(compressed.size() < got.size() / 4);
    CHECK(gunzip(compressed) == got);
  }
  SECTION("OpenMetrics") {
    MetricsStream s(snap, {max_use_family(42)}, Format::openmetrics, Compression::none);
    const std::string om = s.read_all();
    CHECK_THAT(om, Catch::Contains("# TYPE processcore_coredumps counter\n"));
    CHECK_THAT(om, Catch::Contains("# TYPE processcore_rescans counter\n"));
    CHECK_THAT(om, Catch::Contains("\nprocesscore_rescans_total 0\n"));
    CHECK_THAT(om, Catch::Contains("\nprocesscore_store_max_use_bytes 42\n"));
    CHECK_THAT(om, Catch::EndsWith("\n# EOF\n"));
  }
}

TEST_CASE("metrics stream: negotiation", "[exporter][web]") {
  CHECK(negotiate_format("") == Format::text);
  CHECK(negotiate_format("text/plain;version=0.0.4") == Format::text);
  CHECK(negotiate_format("application/openmetrics-text;version=1.0.0,text/plain;q=0.5") ==
        Format::openmetrics);
  CHECK(negotiate_format("text/plain, application/openmetrics-text; q=0") == Format::text);
  CHECK(negotiate_compression("gzip") == Compression::gzip);
  CHECK(negotiate_compression("deflate, gzip;q=1.0") == Compression::gzip);
  CHECK(negotiate_compression("gzip;q=0") == Compression::none);
  CHECK(negotiate_compression("gzipx, br") == Compression::none);
  CHECK(negotiate_compression("") == Compression::none);
}

TEST_CASE("global series cap: folds into other/other, the same series on every start",
          "[exporter][web]") {
  // Five executables on five hosts, crashing at t = 1..5; fed in two different orders.
  auto build = [](const std::vector<int>& order) {
    CrashState st(0, 0, 3);
    for (int i : order) {
      common::SeriesKey key{"host-" + std::to_string(i), "/bin/e" + std::to_string(i), "SEGV",
                            true};
      st.add_record(static_cast<uint64_t>(i), 0, key, i, 10, 0);
    }
    st.settle();
    return st.snapshot();
  };
  for (const auto& order : {std::vector<int>{1, 2, 3, 4, 5}, std::vector<int>{5, 3, 1, 4, 2}}) {
    const Snapshot snap = build(order);
    std::set<std::string> own;
    uint64_t other = 0;
    uint64_t total = 0;
    for (const auto& s : snap.series) {
      total += s.count;
      if (s.labels.hostname == "other") {
        CHECK(s.labels.executable == "other");
        other += s.count;
      } else {
        own.insert(s.labels.hostname);
      }
    }
    CHECK(own == std::set<std::string>{"host-1", "host-2", "host-3"});
    CHECK(other == 2);
    CHECK(total == 5);
    CHECK(snap.folded_series == 2);
  }
}
