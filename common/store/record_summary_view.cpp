#include "common/store/record_summary_view.hpp"

#include "common/store/record.hpp"

#include <cmath>
#include <limits>
#include <utility>

namespace common {

namespace {

bool missing(const SummaryValue& v) {
  return v.kind == JsonKind::absent || v.kind == JsonKind::null;
}

Error wrong_type(std::string_view key) {
  return Error{"field '" + std::string(key) + "' has the wrong type", 0};
}

// A string field: "" when missing or null (its text moved out).
Expected<std::string> text(SummaryValue& v, std::string_view key) {
  if (missing(v)) {
    return std::string();
  }
  if (!v.is_string()) {
    return std::unexpected(wrong_type(key));
  }
  return std::move(v.text);
}

Expected<bool> flag(const SummaryValue& v, std::string_view key) {
  if (missing(v)) {
    return false;
  }
  if (v.kind != JsonKind::boolean) {
    return std::unexpected(wrong_type(key));
  }
  return v.boolean;
}

// A number as T, converted like nlohmann's get<T>() (integers wrap or truncate, a fraction is
// dropped). A floating value outside T's range is an error here: converting it is undefined.
template <typename T>
Expected<std::optional<T>> number(const SummaryValue& v, std::string_view key) {
  switch (v.kind) {
  case JsonKind::absent:
  case JsonKind::null:
    return std::optional<T>();
  case JsonKind::integer:
    return std::optional<T>(static_cast<T>(v.integer));
  case JsonKind::unsigned_integer:
    return std::optional<T>(static_cast<T>(v.unsigned_integer));
  case JsonKind::floating:
    if (std::isfinite(v.floating) &&
        v.floating > static_cast<double>(std::numeric_limits<T>::min()) - 1 &&
        v.floating < static_cast<double>(std::numeric_limits<T>::max())) {
      return std::optional<T>(static_cast<T>(v.floating));
    }
    break;
  default:
    break;
  }
  return std::unexpected(wrong_type(key));
}

// The object kinds the full reader demands: missing, or an object (null is not one).
bool object_or_missing(const SummaryValue& self) {
  return self.kind == JsonKind::absent || self.kind == JsonKind::object;
}

// The crash site in one short phrase (see RecordView::site).
std::string crash_site(const RecordSummary::Crash& crash) {
  if (const auto& chain = crash.signature_chain.str_or_empty(); !chain.empty()) {
    return chain;
  }
  if (const auto& name = crash.symbol_name.str_or_empty(); !name.empty()) {
    const auto& off = crash.symbol_offset.str_or_empty();
    return off.empty() || off == "0x0" ? name : name + "+" + off;
  }
  if (const auto& sym = crash.symbol.str_or_empty(); !sym.empty()) {
    return sym;
  }
  if (const auto& mod = crash.module.str_or_empty(); !mod.empty()) {
    std::string site = mod.substr(mod.rfind('/') + 1); // npos + 1 == 0: the whole name
    if (const auto& off = crash.module_offset.str_or_empty(); !off.empty()) {
      site += "+" + off;
    }
    return site;
  }
  return {};
}

// The view of a summary (its strings are moved out), or why the record is malformed.
Expected<RecordView> view_of(RecordSummary& s) {
  if (!object_or_missing(s.core.self) || !object_or_missing(s.store.self)) {
    return fail("record sections 'core' and 'store' must be objects");
  }
  RecordView r;
  auto id = text(s.id, "id");
  auto time = text(s.time, "time");
  auto hostname = text(s.hostname, "hostname");
  auto executable = text(s.executable, "executable");
  auto deleted = flag(s.executable_deleted, "executable_deleted");
  auto signal = number<int>(s.signal, "signal");
  auto signal_name = text(s.signal_name, "signal_name");
  auto pid = number<int64_t>(s.pid, "pid");
  auto uid = number<int64_t>(s.uid, "uid");
  auto comm = text(s.comm, "comm");
  auto present = flag(s.core.present, "present");
  auto reason = text(s.core.reason, "reason");
  auto size = number<uint64_t>(s.core.size, "size");
  for (const Error* e :
       {id ? nullptr : &id.error(), time ? nullptr : &time.error(),
        hostname ? nullptr : &hostname.error(), executable ? nullptr : &executable.error(),
        deleted ? nullptr : &deleted.error(), signal ? nullptr : &signal.error(),
        signal_name ? nullptr : &signal_name.error(), pid ? nullptr : &pid.error(),
        uid ? nullptr : &uid.error(), comm ? nullptr : &comm.error(),
        present ? nullptr : &present.error(), reason ? nullptr : &reason.error(),
        size ? nullptr : &size.error()}) {
    if (e) {
      return std::unexpected(*e);
    }
  }
  if (id->empty()) {
    return fail("record has no 'id'");
  }
  if (signal->value_or(0) < 0) {
    return fail("record has a negative 'signal'");
  }
  r.id = std::move(*id);
  r.time = parse_time(*time).value_or(0);
  r.hostname = std::move(*hostname);
  r.executable = std::move(*executable);
  r.executable_deleted = *deleted;
  r.signal = signal->value_or(0);
  r.signal_name = std::move(*signal_name);
  r.pid = *pid;
  r.uid = *uid;
  r.comm = std::move(*comm);
  r.core.present = *present;
  r.core.reason = std::move(*reason);
  r.core.size = size->value_or(0);
  r.core.removed = s.core.removed.is_string();
  // Free-form: a crash section of another type is ignored, as by the full reader.
  if (s.crash.self.kind == JsonKind::object) {
    r.signature = s.crash.signature.str_or_empty();
    r.site = crash_site(s.crash);
  }
  return r;
}

} // namespace

Expected<RecordView> read_record_view(std::string_view text) {
  auto summary = read_record_summary(text);
  if (!summary) {
    return std::unexpected(std::move(summary.error()));
  }
  return view_of(*summary);
}

} // namespace common
