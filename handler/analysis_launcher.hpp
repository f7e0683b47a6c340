// The analysis child's own uid: the launcher lives in common/sandbox.
#pragma once

#include "common/sandbox/analysis_launcher.hpp"

namespace handler {
using sandbox::analysis_ids;
using sandbox::AnalysisIds;
using sandbox::k_analysis_gid;
using sandbox::k_analysis_uid;
using sandbox::start_analysis_launcher;
} // namespace handler
