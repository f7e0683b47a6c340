// The record's `python` section.
#include "common/crash/python/stacks.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace crash::python {

const char* status_name(PyStatus status) {
  switch (status) {
  case PyStatus::ok:
    return "ok";
  case PyStatus::partial:
    return "partial";
  case PyStatus::unsupported:
    return "unsupported";
  case PyStatus::invalid:
    return "invalid";
  case PyStatus::failed:
    return "failed";
  }
  return "invalid";
}

nlohmann::json to_json(const PythonStacks& s) {
  nlohmann::json threads = nlohmann::json::array();
  for (const PyThread& t : s.threads) {
    nlohmann::json frames = nlohmann::json::array();
    for (const PyFrame& f : t.frames) {
      frames.push_back(
          {{"function", f.function}, {"file", f.file}, {"line", f.line}, {"entry", f.entry}});
    }
    threads.push_back({{"native_thread_id", t.native_thread_id},
                       {"thread_id", t.thread_id},
                       {"interpreter_id", t.interpreter_id},
                       {"holds_gil", t.holds_gil},
                       {"truncated", t.truncated},
                       {"frames", std::move(frames)}});
  }
  nlohmann::json j = {{"status", status_name(s.status)},
                      {"version", s.version},
                      {"module", s.module},
                      {"finalizing", s.finalizing},
                      {"threads", std::move(threads)},
                      {"reads", s.reads},
                      {"bytes", s.bytes},
                      {"elapsed_us", s.elapsed_us}};
  if (!s.detail.empty()) {
    j["detail"] = s.detail;
  }
  if (!s.cut.empty()) {
    j["cut"] = s.cut;
  }
  if (!s.source.empty()) {
    j["source"] = s.source;
  }
  return j;
}

namespace {

template <typename T>
void get(const nlohmann::json& j, const char* key, T& out) {
  if (!j.is_object()) {
    return;
  }
  const auto it = j.find(key);
  if (it == j.end()) {
    return;
  }
  if constexpr (std::is_same_v<T, bool>) {
    if (it->is_boolean()) {
      out = it->get<bool>();
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (it->is_string()) {
      out = it->get<std::string>();
    }
  } else if constexpr (std::is_signed_v<T>) {
    if (it->is_number_integer()) {
      out = it->get<T>();
    }
  } else {
    if (it->is_number_unsigned()) {
      out = it->get<T>();
    }
  }
}

} // namespace

PythonStacks python_stacks_from_json(const nlohmann::json& j) {
  PythonStacks s;
  std::string status;
  get(j, "status", status);
  for (PyStatus st : {PyStatus::ok, PyStatus::partial, PyStatus::unsupported, PyStatus::failed}) {
    if (status == status_name(st)) {
      s.status = st;
    }
  }
  get(j, "version", s.version);
  get(j, "module", s.module);
  get(j, "detail", s.detail);
  get(j, "cut", s.cut);
  get(j, "source", s.source);
  get(j, "finalizing", s.finalizing);
  get(j, "reads", s.reads);
  get(j, "bytes", s.bytes);
  get(j, "elapsed_us", s.elapsed_us);
  if (j.is_object() && j.contains("threads") && j["threads"].is_array()) {
    for (const auto& jt : j["threads"]) {
      PyThread t;
      get(jt, "native_thread_id", t.native_thread_id);
      get(jt, "thread_id", t.thread_id);
      get(jt, "interpreter_id", t.interpreter_id);
      get(jt, "holds_gil", t.holds_gil);
      get(jt, "truncated", t.truncated);
      if (jt.is_object() && jt.contains("frames") && jt["frames"].is_array()) {
        for (const auto& jf : jt["frames"]) {
          PyFrame f;
          get(jf, "function", f.function);
          get(jf, "file", f.file);
          get(jf, "line", f.line);
          get(jf, "entry", f.entry);
          t.frames.push_back(std::move(f));
        }
      }
      s.threads.push_back(std::move(t));
    }
  }
  return s;
}

std::string render_traceback(const PythonStacks& s, uint64_t crashed_tid) {
  std::string out;
  for (const PyThread& t : s.threads) {
    char id[32];
    std::snprintf(id, sizeof id, "0x%016llx", static_cast<unsigned long long>(t.thread_id));
    out += t.native_thread_id == crashed_tid ? "Current thread " : "Thread ";
    out += id;
    out += t.holds_gil ? " [GIL]" : "";
    out += " (most recent call first):\n";
    for (const PyFrame& f : t.frames) {
      if (f.line >= 0) {
        out += "  File \"" + f.file + "\", line " + std::to_string(f.line) + " in " + f.function +
               "\n";
      } else {
        out += "  File \"" + f.file + "\", line ??? in " + f.function + "\n";
      }
    }
    if (t.truncated) {
      out += "  ...\n";
    }
    out += "\n";
  }
  return out;
}

} // namespace crash::python
