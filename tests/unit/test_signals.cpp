#include "common/base/signals.hpp"

#include <catch2/catch.hpp>

#include <csignal>

TEST_CASE("signal names and numbers round-trip", "[signals]") {
  CHECK(common::signal_name(SIGSEGV) == "SEGV");
  CHECK(common::signal_name(SIGABRT) == "ABRT");
  CHECK(common::signal_name(SIGFPE) == "FPE");
  CHECK(common::signal_name(34) == "RTMIN");
  CHECK(common::signal_name(37) == "RTMIN+3");
  CHECK(common::signal_name(99) == "SIG99");
  for (int s = 1; s <= 64; ++s) {
    if (s == 32 || s == 33) {
      continue;
    }
    INFO(s);
    CHECK(common::parse_signal(common::signal_name(s)) == s);
  }
  CHECK(common::parse_signal("sigsegv") == SIGSEGV);
  CHECK(common::parse_signal("SIGABRT") == SIGABRT);
  CHECK(common::parse_signal("6") == SIGABRT);
  CHECK(common::parse_signal("IOT") == SIGABRT);
  CHECK_FALSE(common::parse_signal("0"));
  CHECK_FALSE(common::parse_signal("65"));
  CHECK_FALSE(common::parse_signal("NOPE"));
  CHECK_FALSE(common::parse_signal(""));
}
