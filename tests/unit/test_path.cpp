#include "common/base/path.hpp"

#include <catch2/catch.hpp>

using common::base_name;
using common::dir_name;

TEST_CASE("base_name is what follows the last slash", "[path]") {
  CHECK(base_name("/usr/bin/cat") == "cat");
  CHECK(base_name("cat") == "cat");
  CHECK(base_name("/") == "");
  CHECK(base_name("dir/") == "");
  CHECK(base_name("") == "");
  CHECK(base_name("/a b/c d (deleted)") == "c d (deleted)");
}

TEST_CASE("dir_name is what precedes the last slash", "[path]") {
  CHECK(dir_name("/usr/bin/cat") == "/usr/bin");
  CHECK(dir_name("/cat") == "/");
  CHECK(dir_name("/") == "/");
  CHECK(dir_name("cat") == ".");
  CHECK(dir_name("") == ".");
  CHECK(dir_name("a/b") == "a");
}
