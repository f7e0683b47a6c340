#include "exporter/exporter.hpp"

#include <catch2/catch.hpp>

using exporter::parse_options;

TEST_CASE("exporter command line: node_exporter's flag names", "[exporter][options]") {
  SECTION("values after a space or an equals sign; addresses in order, old spelling last") {
    auto o =
        parse_options({"--config=/etc/x.conf", "--store", "/s", "--listen", "127.0.0.1:1",
                       "--web.listen-address=[::1]:2", "--web.listen-address", ":3",
                       "--web.telemetry-path", "/m", "--log.level=debug", "--log.format", "json"});
    REQUIRE(o);
    CHECK(o->config_given);
    CHECK(o->config_path == "/etc/x.conf");
    CHECK(o->store == "/s");
    CHECK(o->listen == std::vector<std::string>{"[::1]:2", ":3", "127.0.0.1:1"});
    CHECK(o->listen_deprecated);
    CHECK(o->telemetry_path == "/m");
    CHECK(o->log_level == spdlog::level::debug);
    CHECK(o->log_format == common::LogFormat::json);
  }
  SECTION("defaults") {
    auto o = parse_options({});
    REQUIRE(o);
    CHECK_FALSE(o->config_given);
    CHECK_FALSE(o->store);
    CHECK(o->listen.empty());
    CHECK_FALSE(o->listen_deprecated);
    CHECK(o->telemetry_path == "/metrics");
    CHECK(o->log_level == spdlog::level::info);
    CHECK(o->log_format == common::LogFormat::logfmt);
    CHECK_FALSE(o->help);
    CHECK(parse_options({"--help"})->help);
    CHECK(parse_options({"--version"})->version);
  }
  SECTION("errors name the argument") {
    auto bogus = parse_options({"--store", "/s", "--bogus", "x"});
    REQUIRE_FALSE(bogus);
    CHECK(bogus.error().message == "unknown argument '--bogus'");
    // One value per occurrence: a second word is not a second address.
    auto extra = parse_options({"--web.listen-address", "127.0.0.1:1", "127.0.0.1:2"});
    REQUIRE_FALSE(extra);
    CHECK(extra.error().message == "unknown argument '127.0.0.1:2'");
    CHECK_FALSE(parse_options({"--store"}));
    CHECK(parse_options({"--web.listen-address", "::1:9464"}).error().message.find("brackets") !=
          std::string::npos);
    for (const char* path : {"/", "/-/healthy", "metrics"}) {
      CHECK_FALSE(parse_options({"--web.telemetry-path", path}));
    }
    CHECK(parse_options({"--log.level", "verbose"}).error().message.find("--log.level") == 0);
    CHECK(parse_options({"--log.format", "text"}).error().message.find("--log.format") == 0);
    // A hostile value is escaped in the message that goes to the log.
    auto esc = parse_options({"--log.level", "\x1b[31m"});
    REQUIRE_FALSE(esc);
    CHECK(esc.error().message.find('\x1b') == std::string::npos);
  }
}
