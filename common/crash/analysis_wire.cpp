#include "common/crash/analysis_wire.hpp"

#include "common/base/escape.hpp"
#include "common/base/json_bounds.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace common {

namespace {

using nlohmann::json;

json symbol_wire(const std::optional<ResolvedSymbol>& s) {
  if (!s) {
    return nullptr;
  }
  return {{"name", to_valid_utf8(s->name)}, {"offset", s->offset}, {"verified", s->verified}};
}

json frame_wire(const Frame& f) {
  json j = {{"pc", f.pc},
            {"trust", std::string(to_string(f.trust))},
            {"module", to_valid_utf8(f.module)},
            {"module_offset", f.module_offset ? json(*f.module_offset) : json(nullptr)},
            {"build_id", to_valid_utf8(f.build_id)},
            {"symbol", symbol_wire(f.symbol)},
            {"inlined", f.inlined},
            {"exact_pc", f.exact_pc},
            {"signal_frame", f.signal_frame}};
  if (f.source) {
    j["file"] = to_valid_utf8(f.source->file);
    j["line"] = f.source->line;
  }
  return j;
}

json thread_wire(const ThreadTrace& t, size_t max_frames) {
  json frames = json::array();
  for (size_t i = 0; i < t.frames.size() && i < max_frames; ++i) {
    frames.push_back(frame_wire(t.frames[i]));
  }
  return {{"tid", t.tid},
          {"crashing", t.crashing},
          {"name", to_valid_utf8(t.name)},
          {"state", to_valid_utf8(t.state)},
          {"error", to_valid_utf8(t.error)},
          {"frames", std::move(frames)}};
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Typed reads that throw json::exception on anything unexpected; analysis_from_wire turns that
// into an error.
template <typename T>
T field(const json& j, const char* key) {
  return j.at(key).get<T>();
}

std::optional<ResolvedSymbol> symbol_from_wire(const json& j) {
  if (j.is_null()) {
    return std::nullopt;
  }
  return ResolvedSymbol{field<std::string>(j, "name"), field<uint64_t>(j, "offset"),
                        field<bool>(j, "verified")};
}

Frame frame_from_wire(const json& j) {
  Frame f;
  f.pc = field<uint64_t>(j, "pc");
  const auto trust = frame_trust_from_string(field<std::string>(j, "trust"));
  if (!trust) {
    throw std::invalid_argument("unknown frame trust");
  }
  f.trust = *trust;
  f.module = field<std::string>(j, "module");
  if (!j.at("module_offset").is_null()) {
    f.module_offset = field<uint64_t>(j, "module_offset");
  }
  f.build_id = field<std::string>(j, "build_id");
  f.symbol = symbol_from_wire(j.at("symbol"));
  if (j.contains("file")) {
    f.source = SourceLine{field<std::string>(j, "file"), field<int>(j, "line")};
  }
  f.inlined = field<bool>(j, "inlined");
  f.exact_pc = field<bool>(j, "exact_pc");
  f.signal_frame = field<bool>(j, "signal_frame");
  return f;
}

ThreadTrace thread_from_wire(const json& j) {
  ThreadTrace t;
  t.tid = field<int64_t>(j, "tid");
  t.crashing = field<bool>(j, "crashing");
  t.name = field<std::string>(j, "name");
  t.state = field<std::string>(j, "state");
  t.error = field<std::string>(j, "error");
  if (!j.at("frames").is_array()) {
    throw std::invalid_argument("frames is not an array");
  }
  for (const auto& f : j.at("frames")) {
    t.frames.push_back(frame_from_wire(f));
  }
  return t;
}

} // namespace

std::string analysis_to_wire(const CrashAnalysis& a, size_t max) {
  json j = {{"symbol", symbol_wire(a.symbol)}, {"signature", nullptr}, {"cut", ""}};
  if (a.signature) {
    json chain = json::array();
    for (const auto& c : a.signature->chain) {
      chain.push_back(to_valid_utf8(c));
    }
    j["signature"] = {{"signature", a.signature->signature},
                      {"input", to_valid_utf8(a.signature->input)},
                      {"chain", std::move(chain)}};
  }
  // Each thread's size once, so that the cut below costs one pass, not one dump per thread.
  std::vector<size_t> sizes;
  sizes.reserve(a.stacks.size());
  for (const auto& t : a.stacks) {
    sizes.push_back(dump(thread_wire(t, t.frames.size())).size() + 1);
  }
  // Room for the rest and the "cut" text.
  const size_t base = dump(j).size() + 128;
  size_t kept = sizes.size();
  size_t total = base + std::accumulate(sizes.begin(), sizes.end(), size_t{0});
  while (kept > 1 && total > max) {
    total -= sizes[--kept];
  }
  std::string cut;
  if (kept < sizes.size()) {
    cut = "threads: " + std::to_string(kept) + " of " + std::to_string(sizes.size()) + " kept";
  }
  size_t crashing_frames = a.stacks.empty() ? 0 : a.stacks[0].frames.size();
  if (kept == 1 && total > max) {
    // The crashing thread alone is too large (long names at every frame): keep its innermost
    // frames, the ones the crash site and the signature come from.
    while (crashing_frames > 0 &&
           base + dump(thread_wire(a.stacks[0], crashing_frames)).size() > max) {
      crashing_frames /= 2;
    }
    cut += (cut.empty() ? "" : ", ") + std::string("crashing thread: ") +
           std::to_string(crashing_frames) + " of " + std::to_string(a.stacks[0].frames.size()) +
           " frames kept";
  }
  j["cut"] = cut;
  json stacks = json::array();
  for (size_t i = 0; i < kept; ++i) {
    stacks.push_back(
        thread_wire(a.stacks[i], i == 0 ? crashing_frames : a.stacks[i].frames.size()));
  }
  j["stacks"] = std::move(stacks);
  return dump(j);
}

Expected<WireAnalysis> analysis_from_wire(std::string_view text, size_t max) {
  if (auto bad = json_bounds_error(text, max); !bad.empty()) {
    return fail("analysis result " + bad);
  }
  try {
    const json j = json::parse(text);
    WireAnalysis w;
    w.analysis.symbol = symbol_from_wire(j.at("symbol"));
    if (const json& s = j.at("signature"); !s.is_null()) {
      w.analysis.signature =
          SignatureV2{field<std::string>(s, "signature"), field<std::string>(s, "input"),
                      field<std::vector<std::string>>(s, "chain")};
    }
    if (!j.is_object() || !j.at("stacks").is_array()) {
      return fail("analysis result is not an object with a stacks array");
    }
    for (const auto& t : j.at("stacks")) {
      w.analysis.stacks.push_back(thread_from_wire(t));
    }
    w.cut = field<std::string>(j, "cut");
    return w;
  } catch (const std::exception& e) {
    return fail(std::string("analysis result is malformed: ") + e.what());
  }
}

} // namespace common
