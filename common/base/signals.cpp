#include "common/base/signals.hpp"

#include "common/base/parse.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <csignal>
#include <utility>

namespace common {

namespace {

// Fixed x86_64/aarch64 numbering, so a record reads the same wherever it is viewed.
constexpr std::array<std::pair<int, std::string_view>, 31> k_names = {{
    {1, "HUP"},   {2, "INT"},     {3, "QUIT"},  {4, "ILL"},     {5, "TRAP"},  {6, "ABRT"},
    {7, "BUS"},   {8, "FPE"},     {9, "KILL"},  {10, "USR1"},   {11, "SEGV"}, {12, "USR2"},
    {13, "PIPE"}, {14, "ALRM"},   {15, "TERM"}, {16, "STKFLT"}, {17, "CHLD"}, {18, "CONT"},
    {19, "STOP"}, {20, "TSTP"},   {21, "TTIN"}, {22, "TTOU"},   {23, "URG"},  {24, "XCPU"},
    {25, "XFSZ"}, {26, "VTALRM"}, {27, "PROF"}, {28, "WINCH"},  {29, "IO"},   {30, "PWR"},
    {31, "SYS"},
}};
constexpr int k_rtmin = 34; // the kernel's SIGRTMIN; glibc reserves two above it
constexpr int k_rtmax = 64;

} // namespace

std::string signal_name(int signo) {
  for (const auto& [n, name] : k_names) {
    if (n == signo) {
      return std::string(name);
    }
  }
  if (signo == k_rtmin) {
    return "RTMIN";
  }
  if (signo > k_rtmin && signo <= k_rtmax) {
    return "RTMIN+" + std::to_string(signo - k_rtmin);
  }
  return "SIG" + std::to_string(signo);
}

std::optional<int> parse_signal(std::string_view text) {
  if (auto n = parse_number<int>(text)) {
    return *n > 0 && *n <= k_rtmax ? n : std::nullopt;
  }
  std::string upper;
  for (char c : text) {
    upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  std::string_view name = upper;
  if (name.starts_with("SIG")) {
    name.remove_prefix(3);
  }
  for (const auto& [n, known] : k_names) {
    if (known == name) {
      return n;
    }
  }
  if (name == "IOT") {
    return SIGABRT;
  }
  if (name == "RTMIN") {
    return k_rtmin;
  }
  if (name.starts_with("RTMIN+")) {
    if (auto off = parse_number<int>(name.substr(6));
        off && *off > 0 && k_rtmin + *off <= k_rtmax) {
      return k_rtmin + *off;
    }
  }
  // "SIG40", the form signal_name() gives unnamed numbers.
  if (auto n = parse_number<int>(name); n && *n > 0 && *n <= k_rtmax) {
    return n;
  }
  return std::nullopt;
}

} // namespace common
