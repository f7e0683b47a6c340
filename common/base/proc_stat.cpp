#include "common/base/proc_stat.hpp"

namespace common {

std::vector<std::string_view> stat_fields(std::string_view stat) {
  // "<pid> (<comm>) <state> <ppid> …\n". comm holds at most 16 bytes of any value, ")" and ") "
  // included, so only the last ')' of the line can end it: the fields after it are numbers and
  // one state letter.
  const size_t open = stat.find(" (");
  const size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open + 2 ||
      open == 0) {
    return {};
  }
  std::vector<std::string_view> out{stat.substr(0, open), stat.substr(open + 2, close - open - 2)};
  std::string_view rest = stat.substr(close + 1);
  if (rest.ends_with('\n')) {
    rest.remove_suffix(1);
  }
  // The kernel separates the fields by one blank each.
  while (rest.starts_with(' ')) {
    rest.remove_prefix(1);
    const size_t end = rest.find(' ');
    out.push_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  }
  return out;
}

std::optional<std::string_view> stat_field(std::string_view stat, size_t n) {
  const auto fields = stat_fields(stat);
  if (n == 0 || n > fields.size()) {
    return std::nullopt;
  }
  return fields[n - 1];
}

} // namespace common
