#include "cli/output/render.hpp"

#include "cli/output/pager.hpp"
#include "common/crash/crash_json.hpp"
#include "common/packages/group_state.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>

namespace cli {

namespace {

using nlohmann::json;

// Display width in columns: one per code point (continuation bytes take none). Wide characters
// are rare in the names we show and counted as one; alignment suffers, never correctness.
size_t width_of(std::string_view s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; }));
}

// Byte offset of the first code point after skipping `cols` columns.
size_t offset_of_col(std::string_view s, size_t cols) {
  size_t i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (cols == 0) {
        break;
      }
      --cols;
    }
  }
  return i;
}

std::string fit(std::string_view s, size_t width, bool keep_end) {
  const size_t w = width_of(s);
  if (w <= width) {
    return std::string(s);
  }
  if (width <= 1) {
    return "…";
  }
  if (keep_end) {
    return "…" + std::string(s.substr(offset_of_col(s, w - (width - 1))));
  }
  return std::string(s.substr(0, offset_of_col(s, width - 1))) + "…";
}

std::string_view core_sgr(std::string_view cell) {
  if (cell == "stored") {
    return "32";
  }
  if (cell == "removed") {
    return "2";
  }
  return "33";
}

std::string_view sig_sgr(std::string_view) {
  return "31";
}

std::string short_sig(const std::string& sig) {
  return sig.empty() ? "-" : printable(sig.substr(0, 12));
}

std::string with_more(const std::vector<std::string>& names) {
  if (names.empty()) {
    return "-";
  }
  std::string s = printable(names.front());
  if (names.size() > 1) {
    s += " +" + std::to_string(names.size() - 1);
  }
  return s;
}

// The newest of several versions, and how many others there were.
std::string with_more_last(const std::vector<std::string>& names) {
  std::string s = printable(names.back());
  if (names.size() > 1) {
    s += " +" + std::to_string(names.size() - 1);
  }
  return s;
}

std::string_view state_sgr(std::string_view state) {
  return state == "regressed" ? "1;31" : state == "new" ? "33" : state == "resolved" ? "32" : "";
}

} // namespace

void print_json(const json& j, bool pretty) {
  // JSON escapes C0 controls but passes C1 ones (U+009B is CSI to some terminals) and bidi
  // overrides through: on a terminal, everything beyond ASCII is written as \uNNNN.
  const bool ascii = paging() || ::isatty(STDOUT_FILENO) == 1;
  const std::string text =
      j.dump(pretty ? 2 : -1, ' ', ascii, json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
}

std::string local_time(int64_t epoch_seconds) {
  if (epoch_seconds == 0) {
    return "-";
  }
  const auto t = static_cast<time_t>(epoch_seconds);
  struct tm tm {};
  localtime_r(&t, &tm);
  // coredumpctl's and journalctl's form, which -S and -U read back. A zone whose abbreviation is
  // no word ("-03") is written as its offset ("-0300"), which they read too.
  char zone[16];
  const size_t zn = std::strftime(zone, sizeof zone, "%Z", &tm);
  const bool word = zn > 0 && std::isalpha(static_cast<unsigned char>(zone[0])) != 0;
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf,
                                 word ? "%a %Y-%m-%d %H:%M:%S %Z" : "%a %Y-%m-%d %H:%M:%S %z", &tm);
  return std::string(buf, n);
}

std::string core_state(const Crash& c) {
  if (c.core_removed) {
    return "removed";
  }
  if (c.core_present) {
    return std::string(common::to_string(c.core_reason)); // stored, truncated, not_elf …
  }
  return "none:" + std::string(common::to_string(c.core_reason));
}

std::vector<Group> group_crashes(const std::vector<Crash>& crashes) {
  // Views into `crashes`, which outlive the groups' building: no string per crash.
  struct Acc {
    Group g;
    std::set<std::string_view> hosts;
    std::set<std::string_view> exes;
    const Crash* last = nullptr;
    const std::string* site = nullptr; // the newest non-empty site
  };
  // By signature, or by executable and signal for crashes without one (the two kinds kept
  // apart). The groups' order is the final sort's alone: (last, last_id) differs between
  // any two groups, since an id is in one group.
  std::unordered_map<std::string_view, Acc> by_signature;
  std::map<std::pair<std::string_view, int>, Acc> by_exe_signal;
  for (const auto& c : crashes) {
    bool fresh = false;
    Acc* acc = nullptr;
    if (c.signature.empty()) {
      auto [it, inserted] = by_exe_signal.try_emplace({c.executable, c.signal});
      acc = &it->second;
      fresh = inserted;
    } else {
      auto [it, inserted] = by_signature.try_emplace(c.signature);
      acc = &it->second;
      fresh = inserted;
    }
    Acc& a = *acc;
    if (fresh) {
      a.g.key = common::group_key(c.signature, c.executable, c.signal);
      a.g.signature = c.signature;
      a.g.executable_key = c.executable;
      a.g.signal = c.signal;
      a.g.signal_name = c.signal_name;
      a.g.first = c.time;
    }
    ++a.g.count;
    // Crashes come oldest first, so the last one seen is the newest.
    a.last = &c;
    if (!c.site.empty()) {
      a.site = &c.site;
    }
    a.hosts.insert(c.hostname);
    a.exes.insert(c.executable);
  }
  std::vector<Group> out;
  out.reserve(by_signature.size() + by_exe_signal.size());
  auto finish = [&](Acc& a) {
    a.g.last = a.last->time;
    a.g.last_id = a.last->id;
    if (a.site) {
      a.g.site = *a.site;
    }
    a.g.hosts.assign(a.hosts.begin(), a.hosts.end());
    a.g.executables.assign(a.exes.begin(), a.exes.end());
    out.push_back(std::move(a.g));
  };
  for (auto& kv : by_signature) {
    finish(kv.second);
  }
  for (auto& kv : by_exe_signal) {
    finish(kv.second);
  }
  std::sort(out.begin(), out.end(), [](const Group& a, const Group& b) {
    return a.last != b.last ? a.last < b.last : a.last_id < b.last_id;
  });
  return out;
}

void print_table(const Term& term, const std::vector<Column>& columns,
                 const std::vector<std::vector<std::string>>& rows, Legend legend) {
  std::vector<size_t> widths;
  for (const auto& c : columns) {
    widths.push_back(width_of(c.header));
  }
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], width_of(row[i]));
    }
  }
  if (term.width > 0) {
    size_t total = 0;
    for (size_t w : widths) {
      total += w;
    }
    total += 2 * (widths.size() - 1);
    for (size_t i = 0; i < columns.size() && total > term.width; ++i) {
      if (columns[i].min_width > 0 && widths[i] > columns[i].min_width) {
        const size_t give = std::min(widths[i] - columns[i].min_width, total - term.width);
        widths[i] -= give;
        total -= give;
      }
    }
  }
  // Lines go into one buffer written in large pieces: a list of 100,000 crashes is rendered
  // without a string per cell.
  std::string out;
  constexpr size_t k_flush = 256 << 10;
  auto emit = [&](const std::vector<std::string>& cells, bool header) {
    for (size_t i = 0; i < columns.size(); ++i) {
      static const std::string none;
      const std::string& cell = i < cells.size() ? cells[i] : none;
      const bool last = i + 1 == columns.size();
      std::string_view sgr;
      if (header) {
        sgr = "1";
      } else if (columns[i].sgr != nullptr && cell != "-") {
        sgr = columns[i].sgr(cell);
      }
      const bool padded = !last || columns[i].right;
      const size_t w = width_of(cell);
      if (!sgr.empty() && term.colour) {
        // Painted as before: the fitted and padded cell inside the SGR sequence.
        std::string shown = fit(cell, widths[i], columns[i].keep_end);
        const size_t sw = width_of(shown);
        if (padded && sw < widths[i]) {
          const std::string fill(widths[i] - sw, ' ');
          shown = columns[i].right ? fill + shown : shown + fill;
        }
        out += term.paint(sgr, shown);
      } else {
        const size_t fill = padded && w < widths[i] ? widths[i] - w : 0;
        if (columns[i].right) {
          out.append(fill, ' ');
        }
        if (w <= widths[i]) {
          out += cell;
        } else {
          out += fit(cell, widths[i], columns[i].keep_end);
        }
        if (!columns[i].right) {
          out.append(fill, ' ');
        }
      }
      if (!last) {
        out += "  ";
      }
    }
    out += '\n';
    if (out.size() >= k_flush) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  };
  std::vector<std::string> header;
  for (const auto& c : columns) {
    header.push_back(c.header);
  }
  if (legend == Legend::show) {
    emit(header, true);
  }
  for (const auto& row : rows) {
    emit(row, false);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void print_list(const Term& term, const std::vector<Crash>& crashes, size_t id_abbrev,
                Legend legend) {
  const std::vector<Column> columns = {
      {"TIME"},
      {"ID"},
      {"HOST", false, 8},
      {"EXECUTABLE", false, 16, true},
      {"SIG", false, 0, false, sig_sgr},
      {"PID", true},
      {"UID", true},
      {"CORE", false, 0, false, core_sgr},
      {"SIZE", true},
      {"SIGNATURE"},
  };
  std::vector<std::vector<std::string>> rows;
  rows.reserve(crashes.size());
  for (const auto& c : crashes) {
    rows.push_back({
        local_time(c.time),
        c.id.substr(0, id_abbrev),
        printable(c.hostname),
        printable(c.executable) + (c.executable_deleted ? " (deleted)" : ""),
        c.signal_name.empty() ? std::to_string(c.signal) : printable(c.signal_name),
        c.pid ? std::to_string(*c.pid) : "-",
        c.uid ? std::to_string(*c.uid) : "-",
        core_state(c),
        c.core_size > 0 ? human_size(c.core_size) : "-",
        short_sig(c.signature),
    });
  }
  print_table(term, columns, rows, legend);
}

void print_groups(const Term& term, const std::vector<Group>& groups, Legend legend) {
  const std::vector<Column> columns = {
      {"SIGNATURE"},
      {"STATE", false, 0, false, state_sgr},
      {"COUNT", true},
      {"FIRST"},
      {"LAST"},
      {"HOSTS", false, 8},
      {"EXECUTABLE", false, 16, true},
      {"SIG", false, 0, false, sig_sgr},
      {"SITE", false, 8},
      {"VERSIONS", false, 8},
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : groups) {
    rows.push_back({
        g.signature.empty() ? "(exe+signal)" : short_sig(g.signature),
        g.state.empty() ? "-" : g.state,
        std::to_string(g.count),
        local_time(g.first),
        local_time(g.last),
        with_more(g.hosts),
        with_more(g.executables),
        g.signal_name.empty() ? std::to_string(g.signal) : printable(g.signal_name),
        g.site.empty() ? "-" : printable(g.site),
        g.versions.empty() ? "-" : with_more_last(g.versions),
    });
  }
  print_table(term, columns, rows, legend);
}

} // namespace cli
