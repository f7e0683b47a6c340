// corectl remove: the verb's command line, who may remove what, and the answers' words.
#include "cli/options.hpp"
#include "cli/verbs/remove.hpp"
#include "common/store/record.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>

using namespace cli;

TEST_CASE("remove takes ids, matches and list's filters, nothing else", "[corectl][remove]") {
  auto o = parse_options({"remove", "4d65897c", "--exe", "/usr/bin/ruby", "-U", "7d"});
  REQUIRE(o);
  CHECK(o->verb == "remove");
  CHECK(o->matches == std::vector<std::string>{"4d65897c"});
  CHECK(o->has_filter_options());
  CHECK(parse_options({"--store", "/s", "remove", "UID=1000"}));
  CHECK_FALSE(parse_options({"remove", "--json"}));
  CHECK_FALSE(parse_options({"remove", "--dry-run"}));
  auto typo = parse_options({"remvoe", "4d65897c"});
  REQUIRE_FALSE(typo);
  CHECK(typo.error().find("did you mean 'remove'?") != std::string::npos);
}

TEST_CASE("a user may remove exactly the crashes corectl shows them", "[corectl][remove]") {
  common::Record r;
  r.uid = 1000;
  r.core.access = common::CoreAccess::owner;
  CHECK(may_remove(1000, r));
  CHECK(may_remove(0, r));
  CHECK_FALSE(may_remove(1001, r));
  // A privilege-changing process's crash (its core root's only) stays root's.
  r.core.access = common::CoreAccess::root_only;
  CHECK_FALSE(may_remove(1000, r));
  CHECK(may_remove(0, r));
  // A record without a uid is nobody's but root's.
  r.uid.reset();
  r.core.access = common::CoreAccess::owner;
  CHECK_FALSE(may_remove(1000, r));
  CHECK(may_remove(0, r));
}

TEST_CASE("removal answers are words both sides know", "[corectl][remove]") {
  for (auto r : {RemoveResult::removed, RemoveResult::not_yours, RemoveResult::not_found,
                 RemoveResult::failed}) {
    CHECK(parse_remove_result(to_string(r)) == r);
  }
  CHECK_FALSE(parse_remove_result("Removed"));
  CHECK_FALSE(parse_remove_result(""));
}

TEST_CASE("items that are not store places are not found, never opened", "[corectl][remove]") {
  test::TempDir dir;
  auto store = common::Store::open(dir.path().string());
  REQUIRE(store);
  const std::vector<Located> items = {{"..", "etc", "0123456789abcdef"},
                                      {"web01", "a/b", "0123456789abcdef"},
                                      {"web01", "usr!bin!x", "0123456789ABCDEF"},
                                      {"web01", "usr!bin!x", "../../passwd"},
                                      {"web01", "usr!bin!x", "0123456789abcdef"}};
  const auto results = remove_crashes(*store, items, 0);
  CHECK(results == std::vector<RemoveResult>(items.size(), RemoveResult::not_found));
}
