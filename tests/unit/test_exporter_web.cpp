#include "exporter/http_server.hpp"
#include "exporter/process_metrics.hpp"
#include "exporter/web_config.hpp"

#include <catch2/catch.hpp>

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
  SECTION("an empty file is plain HTTP") {
    auto c = parse_web_config("", "web.yml");
    REQUIRE(c);
    CHECK_FALSE(c->tls());
    CHECK(c->users.empty());
  }
  SECTION("what is not implemented is refused, not ignored") {
    CHECK_FALSE(parse_web_config("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                 "  client_auth_type: RequireAndVerifyClientCert\n",
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
  auto v4 = parse_listen_address("127.0.0.1:9464");
  REQUIRE(v4);
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == "9464");
  auto v6 = parse_listen_address("[::1]:0");
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->port == "0");
  auto any = parse_listen_address(":9464");
  REQUIRE(any);
  CHECK(any->host.empty());
  CHECK_FALSE(parse_listen_address("127.0.0.1"));
  CHECK_FALSE(parse_listen_address("::1:9464"));
  CHECK_FALSE(parse_listen_address("[::1:9464"));
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
