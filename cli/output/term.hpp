// What corectl knows about its standard output: whether it is a terminal, how wide, and whether
// to colour. A leaf header: options and every printer use it without the renderer.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cli {

enum class Colour { auto_, always, never };

// What we know about standard output.
struct Term {
  bool colour = false;
  size_t width = 0; // 0 = not a terminal: never truncate (pipes get whole lines, like git)
  // Detects stdout; NO_COLOR and TERM=dumb turn colour off under Colour::auto_.
  static Term detect(Colour colour);
  // `text` wrapped in an SGR sequence when colour is on ("1" bold, "31" red …).
  std::string paint(std::string_view sgr, std::string_view text) const;
};

} // namespace cli
