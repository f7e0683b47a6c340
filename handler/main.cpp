// process-core: run by the kernel for every core dump (see core_pattern in core(5)).
#include "handler/handler.hpp"

int main(int argc, char** argv) {
  return handler::run(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
}
