#include "common/store/record_summary.hpp"

#include "common/base/json_bounds.hpp"
#include "common/store/record.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <utility>
#include <vector>

namespace common {

const std::string& SummaryValue::str_or_empty() const {
  static const std::string empty;
  return kind == JsonKind::string ? text : empty;
}

namespace {

using nlohmann::json;

// The object the parser is in: one of those whose members are kept, or any other container.
enum class Scope : uint8_t { other, top, core, crash, symbol, store };

// Where the next value goes: a field, and the scope its members are read in when it is an object
// (`other` for scalar fields, whose objects and arrays are kept as a kind only).
struct Target {
  SummaryValue* field = nullptr;
  Scope inner = Scope::other;
};

// A handler for nlohmann::json::sax_parse(): the parser does all the validation (the same code
// path as json::parse(), so the same verdict), this only keeps the fields the summary names. The
// parser keeps its own container stack on the heap, so depth never reaches the call stack.
class SummaryHandler {
public:
  explicit SummaryHandler(RecordSummary& out) : m_out(out) { m_scopes.reserve(k_max_json_depth); }

  bool null() {
    return scalar(JsonKind::null, [](SummaryValue&) {});
  }
  bool boolean(bool v) {
    return scalar(JsonKind::boolean, [v](SummaryValue& f) { f.boolean = v; });
  }
  bool number_integer(json::number_integer_t v) {
    return scalar(JsonKind::integer, [v](SummaryValue& f) { f.integer = v; });
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return scalar(JsonKind::unsigned_integer, [v](SummaryValue& f) { f.unsigned_integer = v; });
  }
  bool number_float(json::number_float_t v, const json::string_t&) {
    return scalar(JsonKind::floating, [v](SummaryValue& f) { f.floating = v; });
  }
  bool string(json::string_t& v) {
    return scalar(JsonKind::string, [&v](SummaryValue& f) { f.text = std::move(v); });
  }
  bool binary(json::binary_t&) {
    return scalar(JsonKind::absent, [](SummaryValue&) {}); // never produced by the JSON format
  }
  bool start_object(std::size_t) { return open(JsonKind::object); }
  bool start_array(std::size_t) { return open(JsonKind::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& name);
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e);

  // The first value's kind: the record must be an object.
  JsonKind top() const { return m_top; }
  const std::string& error() const { return m_error; }

private:
  // A new value for the current target: a repeated key replaces the earlier value (and a
  // repeated section all the fields read from it), as in nlohmann's DOM.
  SummaryValue* assign(JsonKind kind) {
    if (m_scopes.empty()) {
      m_top = kind;
    }
    SummaryValue* field = std::exchange(m_target.field, nullptr);
    if (field == nullptr) {
      return nullptr;
    }
    switch (m_target.inner) {
    case Scope::core:
      m_out.core = {};
      break;
    case Scope::crash:
      m_out.crash = {};
      break;
    case Scope::store:
      m_out.store = {};
      break;
    case Scope::symbol:
      m_out.crash.symbol_name = {};
      m_out.crash.symbol_offset = {};
      break;
    default:
      break;
    }
    *field = {};
    field->kind = kind;
    return field;
  }
  template <typename Fill>
  bool scalar(JsonKind kind, Fill fill) {
    if (SummaryValue* field = assign(kind)) {
      fill(*field);
    }
    return true;
  }
  bool open(JsonKind kind) {
    const Scope inner = m_target.inner;
    const bool kept = assign(kind) != nullptr;
    if (m_scopes.empty()) {
      m_scopes.push_back(kind == JsonKind::object ? Scope::top : Scope::other);
    } else {
      m_scopes.push_back(kept && kind == JsonKind::object ? inner : Scope::other);
    }
    return true;
  }
  bool close() {
    m_scopes.pop_back();
    m_target = {};
    return true;
  }

  RecordSummary& m_out;
  std::vector<Scope> m_scopes; // one per open container
  Target m_target;
  JsonKind m_top = JsonKind::absent;
  std::string m_error;
};

using R = RecordSummary;

// A member kept in a scope, and where it goes. Most keys of a record are none of these.
template <typename Section>
struct SectionKey {
  std::string_view name;
  SummaryValue Section::*field;
};

constexpr std::array k_top_keys = {
    SectionKey<R>{"schema", &R::schema},
    SectionKey<R>{"id", &R::id},
    SectionKey<R>{"time", &R::time},
    SectionKey<R>{"hostname", &R::hostname},
    SectionKey<R>{"executable", &R::executable},
    SectionKey<R>{"executable_deleted", &R::executable_deleted},
    SectionKey<R>{"signal", &R::signal},
    SectionKey<R>{"signal_name", &R::signal_name},
    SectionKey<R>{"pid", &R::pid},
    SectionKey<R>{"uid", &R::uid},
    SectionKey<R>{"comm", &R::comm},
};

constexpr std::array k_core_keys = {
    SectionKey<R::Core>{"present", &R::Core::present},
    SectionKey<R::Core>{"reason", &R::Core::reason},
    SectionKey<R::Core>{"size", &R::Core::size},
    SectionKey<R::Core>{"stored_size", &R::Core::stored_size},
    SectionKey<R::Core>{"truncated", &R::Core::truncated},
    SectionKey<R::Core>{"removed", &R::Core::removed},
    SectionKey<R::Core>{"path", &R::Core::path},
};

constexpr std::array k_crash_keys = {
    SectionKey<R::Crash>{"signature", &R::Crash::signature},
    SectionKey<R::Crash>{"signature_chain", &R::Crash::signature_chain},
    SectionKey<R::Crash>{"module", &R::Crash::module},
    SectionKey<R::Crash>{"module_offset", &R::Crash::module_offset},
    SectionKey<R::Crash>{"si_code_name", &R::Crash::si_code_name},
    SectionKey<R::Crash>{"fault_address", &R::Crash::fault_address},
};

constexpr std::array k_symbol_keys = {
    SectionKey<R::Crash>{"name", &R::Crash::symbol_name},
    SectionKey<R::Crash>{"offset", &R::Crash::symbol_offset},
};

constexpr std::array k_store_keys = {
    SectionKey<R::Store>{"host", &R::Store::host},
    SectionKey<R::Store>{"executable", &R::Store::executable},
};

template <typename Section, size_t N>
SummaryValue* find(const std::array<SectionKey<Section>, N>& keys, std::string_view name,
                   Section& section) {
  for (const auto& k : keys) {
    if (k.name == name) {
      return &(section.*k.field);
    }
  }
  return nullptr;
}

bool SummaryHandler::key(json::string_t& name) {
  m_target = {};
  switch (m_scopes.back()) {
  case Scope::top:
    if (name == "core") {
      m_target = {&m_out.core.self, Scope::core};
    } else if (name == "crash") {
      m_target = {&m_out.crash.self, Scope::crash};
    } else if (name == "store") {
      m_target = {&m_out.store.self, Scope::store};
    } else {
      m_target.field = find(k_top_keys, name, m_out);
    }
    break;
  case Scope::core:
    m_target.field = find(k_core_keys, name, m_out.core);
    break;
  case Scope::crash:
    if (name == "symbol") {
      m_target = {&m_out.crash.symbol, Scope::symbol};
    } else {
      m_target.field = find(k_crash_keys, name, m_out.crash);
    }
    break;
  case Scope::symbol:
    m_target.field = find(k_symbol_keys, name, m_out.crash);
    break;
  case Scope::store:
    m_target.field = find(k_store_keys, name, m_out.store);
    break;
  case Scope::other:
    break;
  }
  return true;
}

bool SummaryHandler::parse_error(std::size_t position, const std::string&,
                                 const nlohmann::detail::exception& e) {
  // nlohmann's message without its exception id and without the "last read" token it quotes:
  // that token is record text, and the message ends up in logs and on terminals.
  // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error while
  // parsing value - invalid literal; last read: 'tru'"
  std::string_view what = e.what();
  if (const size_t id_end = what.find("] "); what.starts_with('[') && id_end != what.npos) {
    what.remove_prefix(id_end + 2);
  }
  if (const size_t at = what.find(": "); what.starts_with("parse error") && at != what.npos) {
    what.remove_prefix(at + 2);
  }
  what = what.substr(0, what.find("; last read"));
  m_error = "at byte " + std::to_string(position) + ": " + std::string(what);
  return false;
}

} // namespace

Expected<RecordSummary> read_record_summary(std::string_view text) {
  if (const std::string why = json_bounds_error(text, k_max_record_bytes); !why.empty()) {
    return fail("record is " + why);
  }
  RecordSummary out;
  SummaryHandler handler(out);
  if (!json::sax_parse(text, &handler)) {
    return fail("record is not valid JSON " + handler.error());
  }
  if (handler.top() != JsonKind::object) {
    return fail("record is not a JSON object");
  }
  return out;
}

} // namespace common
