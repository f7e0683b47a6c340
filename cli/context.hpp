// What one corectl invocation knows, filled step by step by run() (corectl.cpp) and handed to
// the verb.
#pragma once

#include "cli/options.hpp"
#include "cli/output/term.hpp"
#include "cli/remote/remote.hpp"
#include "common/config/config.hpp"
#include "common/store/store.hpp"

#include <optional>

namespace cli {

struct Context {
  Options opts;
  common::Config config;              // loaded only for verbs that need the store
  std::optional<common::Store> store; // open when the verb needs the store
  std::optional<RemoteBucket> remote; // instead of the store with --remote
  Term term;
};

} // namespace cli
