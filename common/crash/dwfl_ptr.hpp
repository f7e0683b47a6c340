// An owning handle on a libdwfl session, for the unwinder and corectl's debuginfod lookups.
#pragma once

#include <elfutils/libdwfl.h>

#include <memory>

namespace common {

// Ends the session (dwfl_end) with the handle.
struct DwflDeleter {
  void operator()(Dwfl* d) const { dwfl_end(d); }
};
using DwflPtr = std::unique_ptr<Dwfl, DwflDeleter>;

} // namespace common
