#include "common/store/user_view.hpp"

#include <catch2/catch.hpp>

TEST_CASE("user_view: a link names one record of the store, nothing else", "[store]") {
  const common::ViewEntry e{"web01", "usr!bin!crasher", "0123456789abcdef"};
  const std::string target = common::view_link_target(e);
  CHECK(target == "../../web01/usr!bin!crasher/0123456789abcdef.json");
  auto back = common::parse_view_link(e.id, target);
  REQUIRE(back);
  CHECK(back->host == e.host);
  CHECK(back->exe == e.exe);
  CHECK(back->id == e.id);

  SECTION("the link's own name must be the record's id") {
    CHECK_FALSE(common::parse_view_link("fedcba9876543210", target));
    CHECK_FALSE(common::parse_view_link("not-an-id", target));
  }
  SECTION("never a path that leaves the store or passes elsewhere") {
    for (const char* bad :
         {"/etc/shadow", "../../../etc/0123456789abcdef.json",
          "../../../../web01/x/0123456789abcdef.json", "../../web01/../0123456789abcdef.json",
          "../.././usr!bin!crasher/0123456789abcdef.json",
          "../../web01/usr!bin!crasher/0123456789abcdef.core.zst",
          "../../web01/a/b/0123456789abcdef.json", "../../web01"}) {
      INFO(bad);
      CHECK_FALSE(common::parse_view_link(e.id, bad));
    }
  }
}
