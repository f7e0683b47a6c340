// The analysis child lives in common/sandbox (corectl runs its debuginfod parsing there too).
#pragma once

#include "common/sandbox/analysis_child.hpp"

namespace handler {
using sandbox::ChildLimits;
using sandbox::ChildResult;
using sandbox::run_in_child;
} // namespace handler
