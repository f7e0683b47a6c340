#include "common/store/record_bound.hpp"

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace common {

namespace {

constexpr size_t k_max_string = 4096;  // cmdline, comm: a path's worth
constexpr size_t k_max_warning = 1024; // one warning line
constexpr size_t k_max_warnings = 64;

size_t text_size(const Record& r) {
  return to_json_text(r).size();
}

void cut_string(std::string& s, size_t max, const char* what, Record& r) {
  if (s.size() > max) {
    r.handler.cut.push_back(std::string(what) + ": " + std::to_string(max) + " of " +
                            std::to_string(s.size()) + " bytes kept");
    s.resize(max); // a split UTF-8 sequence at the end is replaced when the JSON is made
  }
}

// Halves the larger of the arrays (by text size) until the record fits or both are empty, so
// neither is emptied for the other's sake; says how much of each was kept.
void shrink_arrays(std::initializer_list<std::pair<nlohmann::json*, const char*>> arrays, Record& r,
                   size_t max) {
  std::vector<size_t> totals;
  for (const auto& [a, name] : arrays) {
    totals.push_back(a->is_array() ? a->size() : 0);
  }
  while (text_size(r) > max) {
    nlohmann::json* largest = nullptr;
    size_t largest_size = 0;
    for (const auto& [a, name] : arrays) {
      const size_t size = a->is_array() && !a->empty() ? a->dump().size() : 0;
      if (size > largest_size) {
        largest = a;
        largest_size = size;
      }
    }
    if (largest == nullptr) {
      break;
    }
    largest->erase(largest->begin() + static_cast<std::ptrdiff_t>(largest->size() / 2),
                   largest->end());
  }
  size_t i = 0;
  for (const auto& [a, name] : arrays) {
    const size_t kept = a->is_array() ? a->size() : 0;
    if (kept < totals[i]) {
      r.handler.cut.push_back(std::string(name) + ": " + std::to_string(kept) + " of " +
                              std::to_string(totals[i]) + " kept");
    }
    ++i;
  }
}

} // namespace

void bound_record(Record& r, size_t max) {
  if (text_size(r) <= max) {
    return;
  }
  cut_string(r.cmdline, k_max_string, "cmdline", r);
  cut_string(r.comm, k_max_string, "comm", r);
  size_t long_warnings = 0;
  for (auto& w : r.handler.warnings) {
    if (w.size() > k_max_warning) {
      w.resize(k_max_warning);
      ++long_warnings;
    }
  }
  if (long_warnings > 0) {
    r.handler.cut.push_back(std::to_string(long_warnings) + " warnings cut to " +
                            std::to_string(k_max_warning) + " bytes");
  }
  if (r.handler.warnings.size() > k_max_warnings) {
    r.handler.cut.push_back("warnings: " + std::to_string(k_max_warnings) + " of " +
                            std::to_string(r.handler.warnings.size()) + " kept");
    r.handler.warnings.resize(k_max_warnings);
  }
  nlohmann::json no_frames = nlohmann::json::array();
  nlohmann::json& frames =
      r.crash.is_object() && r.crash.contains("frames") ? r.crash["frames"] : no_frames;
  // The package section names each mapped path again: its lists are cut with the mappings.
  nlohmann::json no_owners = nlohmann::json::array();
  nlohmann::json no_unowned = nlohmann::json::array();
  nlohmann::json& owners =
      r.packages.is_object() && r.packages.contains("owners") ? r.packages["owners"] : no_owners;
  nlohmann::json& unowned =
      r.packages.is_object() && r.packages.contains("unowned") ? r.packages["unowned"] : no_unowned;
  shrink_arrays({{&r.mappings, "mappings"},
                 {&frames, "crash.frames"},
                 {&owners, "packages.owners"},
                 {&unowned, "packages.unowned"}},
                r, max);
  // Whatever is left too large is dropped whole, least useful first; the Python stacks (bounded
  // to their share when read) last, the one account of a crash whose backtraces did not fit.
  for (auto [section, name] : {std::pair{&r.container, "container"},
                               {&r.runtime_report, "runtime_report"},
                               {&r.packages, "packages"},
                               {&r.mappings, "mappings"},
                               {&r.crash, "crash"},
                               {&r.python, "python"}}) {
    if (text_size(r) <= max) {
      return;
    }
    if (!section->empty()) {
      *section = section->is_array() ? nlohmann::json::array() : nlohmann::json::object();
      r.handler.cut.push_back(std::string(name) + " removed");
    }
  }
  if (text_size(r) > max) {
    // Only the identity is left: the strings the kernel handed us, bounded by it except for
    // the hostname (64 bytes) and the executable (a path): cut the executable too.
    cut_string(r.executable, k_max_string, "executable", r);
    r.handler.warnings.clear();
  }
}

} // namespace common
