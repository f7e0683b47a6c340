#include "cli/catalog/match.hpp"

#include "common/base/parse.hpp"
#include "common/base/signals.hpp"

#include <algorithm>
#include <cctype>

namespace cli {

namespace {

bool all_of(std::string_view s, const char* set) {
  return !s.empty() && s.find_first_not_of(set) == std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

// "FIELD=" with a field name (letters and underscores), or no field.
std::string_view field_name(std::string_view word) {
  const size_t eq = word.find('=');
  if (eq == std::string_view::npos || eq == 0 ||
      !all_of(word.substr(0, eq), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")) {
    return {};
  }
  return word.substr(0, eq);
}

std::expected<int64_t, std::string> number(std::string_view field, std::string_view v) {
  auto n = common::parse_number<int64_t>(v);
  if (!n || *n < 0) {
    return std::unexpected(std::string(field) + "= takes a number, not '" + std::string(v) + "'");
  }
  return *n;
}

} // namespace

MatchKind classify_match(std::string_view word) {
  if (!field_name(word).empty()) {
    return MatchKind::field;
  }
  if (word.starts_with('/')) {
    return MatchKind::executable;
  }
  if (all_of(word, "0123456789") && word.size() <= 7) {
    return MatchKind::pid;
  }
  if (word.size() >= 8 && word.size() <= 16 && all_of(word, "0123456789abcdefABCDEF")) {
    return MatchKind::id;
  }
  return MatchKind::name;
}

bool only_ids(const std::vector<std::string>& words) {
  return !words.empty() && std::all_of(words.begin(), words.end(), [](const std::string& w) {
    return classify_match(w) == MatchKind::id ||
           (classify_match(w) == MatchKind::field &&
            (upper(field_name(w)) == "ID" || upper(field_name(w)) == "COREDUMP_ID"));
  });
}

std::expected<void, std::string> add_matches(const std::vector<std::string>& words, Filter& f) {
  for (const auto& word : words) {
    switch (classify_match(word)) {
    case MatchKind::id:
      f.ids.push_back(lower(word));
      continue;
    case MatchKind::pid:
      f.pids.push_back(*common::parse_number<int64_t>(word));
      continue;
    case MatchKind::executable:
      f.executables.push_back(word);
      continue;
    case MatchKind::name:
      f.names.push_back(word);
      continue;
    case MatchKind::field:
      break;
    }
    std::string field = upper(field_name(word));
    const std::string value = word.substr(field.size() + 1);
    // coredumpctl's journal fields are accepted too (COREDUMP_PID=, COREDUMP_EXE= …).
    if (field.starts_with("COREDUMP_")) {
      field = field.substr(9);
    }
    if (value.empty()) {
      return std::unexpected("the match " + word + " has no value");
    }
    if (field == "ID") {
      if (value.size() > 16 || !all_of(value, "0123456789abcdefABCDEF")) {
        return std::unexpected("'" + value + "' is not a record id (ids are 16 hex characters)");
      }
      f.ids.push_back(lower(value));
    } else if (field == "PID" || field == "UID") {
      auto n = number(field, value);
      if (!n) {
        return std::unexpected(n.error());
      }
      (field == "PID" ? f.pids : f.uids).push_back(*n);
    } else if (field == "COMM") {
      f.comms.push_back(value);
    } else if (field == "EXE" || field == "EXECUTABLE") {
      f.executables.push_back(value);
    } else if (field == "HOST" || field == "HOSTNAME") {
      f.hosts.push_back(value);
    } else if (field == "SIGNAL" || field == "SIG") {
      auto n = common::parse_signal(value);
      if (!n) {
        return std::unexpected("unknown signal '" + value + "'");
      }
      f.signals.push_back(*n);
    } else if (field == "SIGNATURE") {
      f.signatures.push_back(lower(value));
    } else if (field == "UNIT" || field == "_SYSTEMD_UNIT") {
      // The crashed process's unit (the record's container.unit): coredumpctl users type
      // COREDUMP_UNIT= and, from journalctl, _SYSTEMD_UNIT=.
      f.units.push_back(value);
    } else {
      return std::unexpected("unknown match field " + std::string(field_name(word)) +
                             "= (fields: ID, PID, UID, COMM, EXE, HOST, SIGNAL, SIGNATURE, UNIT)");
    }
  }
  return {};
}

} // namespace cli
