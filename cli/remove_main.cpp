// process-core-remove: serves one connection of the removal service (cli/remove.hpp). systemd
// runs it per connection (process-core-remove@.service, Accept=yes) as the store user, with the
// connection on stdin:  process-core-remove [--config FILE] [--store DIR]
#include "cli/verbs/remove.hpp"
#include "common/base/escape.hpp"
#include "common/config/config.hpp"

#include <sys/socket.h>

#include <cstdio>
#include <exception>
#include <optional>
#include <string>

int main(int argc, char** argv) {
  try {
    std::optional<std::string> config_path, store_path;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if ((a == "--config" || a == "--store") && i + 1 < argc) {
        (a == "--config" ? config_path : store_path) = argv[++i];
      } else {
        std::fprintf(stderr, "usage: process-core-remove [--config FILE] [--store DIR] "
                             "(a connection on standard input)\n");
        return 2;
      }
    }
    auto loaded = common::load_config(config_path.value_or(common::k_default_config_path),
                                      config_path ? common::MissingOk::no : common::MissingOk::yes);
    if (!loaded) {
      std::fprintf(stderr, "process-core-remove: %s\n",
                   common::printable(loaded.error().message).c_str());
      return 1;
    }
    const std::string root = store_path.value_or(loaded->config.store);
    auto store = common::Store::open(root);
    if (!store) {
      std::fprintf(stderr, "process-core-remove: %s\n",
                   common::printable(store.error().message).c_str());
      // The requester hears why, in the protocol's words (never blocking on a full socket).
      static constexpr char k_answer[] = "error the store is not available\n";
      ::send(0, k_answer, sizeof k_answer - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
      return 1;
    }
    return cli::serve_remove(0, *store);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "process-core-remove: internal error: %s\n",
                 common::printable(e.what()).c_str());
  } catch (...) {
    std::fprintf(stderr, "process-core-remove: internal error\n");
  }
  return 1;
}
