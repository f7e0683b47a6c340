#include "common/base/io.hpp"
#include "common/base/proc_stat.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <string>

using common::stat_field;
using common::stat_fields;

TEST_CASE("stat fields are numbered as in proc(5)", "[proc_stat]") {
  const std::string stat = "15774 (cat) R 15667 15667 6143 0 -1 4194304 100 0 0 0 250 50 0 0 20 "
                           "0 1 0 66752 3133440 390 18446744073709551615\n";
  const auto f = stat_fields(stat);
  REQUIRE(f.size() == 25);
  CHECK(f[0] == "15774");
  CHECK(f[1] == "cat");
  CHECK(f[2] == "R");
  CHECK(stat_field(stat, 1) == "15774");
  CHECK(stat_field(stat, 3) == "R");
  CHECK(stat_field(stat, 9) == "4194304");
  CHECK(stat_field(stat, 22) == "66752");
  CHECK(stat_field(stat, 25) == "18446744073709551615"); // the newline is not part of it
  CHECK_FALSE(stat_field(stat, 26));
  CHECK_FALSE(stat_field(stat, 0));
}

TEST_CASE("a hostile comm cannot shift the fields", "[proc_stat]") {
  // comm is the crashed process's choice (prctl(PR_SET_NAME)): 15 bytes of anything but NUL.
  for (const std::string comm : {"a) b", ") S 1 2 3 4 5", "x (y) z", "((", "))", " ", ""}) {
    const std::string stat = "42 (" + comm + ") S 1 42 42 0 -1 4202816 7 0 0 0";
    INFO(comm);
    const auto f = stat_fields(stat);
    REQUIRE(f.size() == 13);
    CHECK(f[1] == comm);
    CHECK(f[2] == "S");
    CHECK(f[3] == "1");
    CHECK(f[8] == "4202816");
  }
}

TEST_CASE("malformed stat lines have no fields", "[proc_stat]") {
  CHECK(stat_fields("").empty());
  CHECK(stat_fields("no parenthesis").empty());
  CHECK(stat_fields("(cat) R 1").empty());      // no pid
  CHECK(stat_fields("15774 cat) R 1").empty()); // no " ("
  CHECK(stat_fields("15774 (cat R 1").empty()); // no ')'
  CHECK(stat_fields("1 )( R").empty());         // ')' before '('
  CHECK(stat_fields("15774 (cat)").size() == 2);
  CHECK_FALSE(stat_field("15774 (cat) R 1 2", 9));
}

TEST_CASE("the reader reads this process's own stat line", "[proc_stat]") {
  // Renamed to a comm made to fool a reader that stops at the first ')'.
  char old_name[17] = {};
  ::prctl(PR_GET_NAME, old_name);
  ::prctl(PR_SET_NAME, "t) R 1 2 (x");
  auto stat = common::read_file(AT_FDCWD, "/proc/self/stat", 4096);
  ::prctl(PR_SET_NAME, old_name);
  REQUIRE(stat);
  const auto f = stat_fields(*stat);
  REQUIRE(f.size() >= 44);
  CHECK(f[0] == std::to_string(::getpid()));
  CHECK(f[1] == "t) R 1 2 (x");
  CHECK(f[3] == std::to_string(::getppid()));
}
