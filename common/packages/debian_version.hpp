// Debian version ordering: the rules of dpkg --compare-versions (deb-version(7)), so that
// "fixed in 2.0-1" and the version a crash ran with compare as apt and dpkg compare them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace common {

// A version split as dpkg splits it: epoch (0 when absent), upstream version and Debian
// revision (empty when absent).
struct DebianVersion {
  unsigned long epoch = 0;
  std::string upstream;
  std::string revision;
};

// Parses `text` as dpkg's parseversion() does (surrounding blanks allowed); nullopt when it is
// empty, has blanks inside, a bad epoch or an upstream version not starting with a digit.
std::optional<DebianVersion> parse_debian_version(std::string_view text);

// <0, 0 or >0 as `a` sorts before, equal to or after `b` (dpkg's verrevcmp on each part: '~'
// before everything, even the end; letters before other characters; digit runs as numbers).
int compare_debian_versions(const DebianVersion& a, const DebianVersion& b);

// The same for version strings; an unparsable version sorts before every valid one (and equal
// to another unparsable one), so a garbage version is never taken as newer than a fix.
int compare_debian_versions(std::string_view a, std::string_view b);

} // namespace common
