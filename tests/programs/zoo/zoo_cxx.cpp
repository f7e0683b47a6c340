// The crash zoo's C++ member: an exception nobody catches (std::terminate → abort).
#include <stdexcept>
#include <string>

namespace zoo {

__attribute__((noinline)) void parse_config(const std::string& text) {
  if (!text.empty()) {
    throw std::runtime_error("bad config: " + text);
  }
}

__attribute__((noinline)) void load(const char* name) {
  parse_config(name);
}

} // namespace zoo

int main(int argc, char** argv) {
  zoo::load(argc > 1 ? argv[1] : "x");
  return 0;
}
