#include "cli/output/term.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>

namespace cli {

Term Term::detect(Colour colour) {
  Term t;
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  if (tty) {
    struct winsize ws {};
    t.width = ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
  }
  const char* term = std::getenv("TERM");
  const char* no_colour = std::getenv("NO_COLOR");
  t.colour = colour == Colour::always ||
             (colour == Colour::auto_ && tty && (no_colour == nullptr || *no_colour == '\0') &&
              !(term != nullptr && std::string_view(term) == "dumb"));
  return t;
}

std::string Term::paint(std::string_view sgr, std::string_view s) const {
  if (!colour || sgr.empty()) {
    return std::string(s);
  }
  return "\x1b[" + std::string(sgr) + "m" + std::string(s) + "\x1b[0m";
}

} // namespace cli
