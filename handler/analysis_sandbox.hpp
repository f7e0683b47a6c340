// The analysis child's sandbox lives in common/sandbox.
#pragma once

#include "common/sandbox/analysis_sandbox.hpp"

namespace handler {
using sandbox::confine;
using sandbox::describe;
using sandbox::isolate;
using sandbox::SandboxFailure;
} // namespace handler
