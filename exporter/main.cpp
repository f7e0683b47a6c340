// process-core-exporter: Prometheus metrics for the process-core store.
#include "exporter/exporter.hpp"

int main(int argc, char** argv) {
  return exporter::run(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
}
