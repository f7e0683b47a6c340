// remove: crashes removed on request, by root directly or for a user by the removal service
// (remove.hpp has the design and the protocol).
#include "cli/verbs/remove.hpp"

#include "cli/catalog/match.hpp"
#include "cli/context.hpp"
#include "cli/exit.hpp"
#include "cli/verbs/select.hpp"
#include "cli/verbs/verbs.hpp"
#include "common/store/ledger.hpp"
#include "common/store/names.hpp"
#include "common/store/user_view.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cli {

std::string_view to_string(RemoveResult r) {
  switch (r) {
  case RemoveResult::removed:
    return "removed";
  case RemoveResult::not_yours:
    return "not-yours";
  case RemoveResult::not_found:
    return "not-found";
  case RemoveResult::failed:
    return "failed";
  }
  return "failed";
}

std::optional<RemoveResult> parse_remove_result(std::string_view word) {
  for (auto r : {RemoveResult::removed, RemoveResult::not_yours, RemoveResult::not_found,
                 RemoveResult::failed}) {
    if (word == to_string(r)) {
      return r;
    }
  }
  return std::nullopt;
}

bool may_remove(uid_t requester, const common::Record& record) {
  if (requester == 0) {
    return true;
  }
  return record.uid && *record.uid == static_cast<int64_t>(requester) &&
         record.core.access == common::CoreAccess::owner;
}

std::vector<RemoveResult> remove_crashes(const common::Store& store,
                                         const std::vector<Located>& items, uid_t requester) {
  std::vector<RemoveResult> results(items.size(), RemoveResult::not_found);
  std::vector<common::RetireItem> retire;
  std::vector<size_t> retire_index;        // item of each retire entry
  std::vector<std::optional<int64_t>> uid; // whose view links each retired crash
  for (size_t i = 0; i < items.size(); ++i) {
    const Located& it = items[i];
    // Components and ids as the store writes them, nothing else: never "..", never a '/'.
    if (!common::is_safe_component(it.host_dir) || !common::is_safe_component(it.exe_dir) ||
        !common::is_record_id(it.id)) {
      continue;
    }
    auto full = read_record(store, it);
    if (!full) {
      const int err = full.error().sys_errno;
      // A user learns nothing of records they may not read: gone, or not theirs.
      results[i] = err == ENOENT || err == ENOTDIR ? RemoveResult::not_found
                   : requester != 0                ? RemoveResult::not_yours
                                                   : RemoveResult::failed;
      continue;
    }
    if (!may_remove(requester, full->record)) {
      results[i] = RemoveResult::not_yours;
      continue;
    }
    results[i] = RemoveResult::failed; // until the record is seen gone
    retire.push_back({it.host_dir, it.exe_dir, it.id, common::series_of(full->record),
                      common::parse_time(full->record.time).value_or(0)});
    retire_index.push_back(i);
    uid.push_back(full->record.uid);
  }
  if (retire.empty()) {
    return results;
  }
  // Counted in the ledger first, so the exporter's counters never go down.
  if (auto n = common::retire_records(store, retire); !n) {
    std::fprintf(stderr, "corectl: %s\n", printable(n.error().message).c_str());
    return results;
  }
  bool any = false;
  for (size_t k = 0; k < retire.size(); ++k) {
    const auto& r = retire[k];
    struct stat st {};
    const std::string rel = common::record_relpath(r.host, r.exe, r.id);
    if (::fstatat(store.fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) {
      continue; // still there (or unknown): failed
    }
    results[retire_index[k]] = RemoveResult::removed;
    any = true;
    if (uid[k] && *uid[k] >= 0) {
      // The user's view must not keep a link to a crash that is gone (the handler would drop it
      // at the user's next crash). Only a link named by the id, inside that uid's directory.
      const std::string link =
          std::string(common::k_user_view_dir) + "/" + std::to_string(*uid[k]) + "/" + r.id;
      ::unlinkat(store.fd(), link.c_str(), 0);
    }
  }
  if (any) {
    // The handler's usage estimate now overstates the store: the next crash measures it.
    ::unlinkat(store.fd(), common::k_usage_name, 0);
    refresh_index(store, IndexMissing::skip);
  }
  return results;
}

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits until `fd` is ready for `events` or the deadline passes.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const int ms = remaining_ms(deadline);
    if (ms == 0) {
      return false;
    }
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, ms);
    if (n > 0) {
      return true;
    }
    if (n < 0 && errno != EINTR) {
      return false;
    }
  }
}

// Sends all of `data` before the deadline (the peer may never read: non-blocking sends).
bool send_all(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN && wait_for(fd, POLLOUT, deadline)) {
      continue;
    }
    return false;
  }
  return true;
}

enum class ReadEnd { complete, eof, too_large, timeout, error };

// Reads until `out` holds `terminator` or the stream ends, at most `limit` bytes.
ReadEnd read_until(int fd, std::string& out, std::string_view terminator, size_t limit,
                   Clock::time_point deadline) {
  char buf[4096];
  for (;;) {
    if (out.find(terminator) != std::string::npos) {
      return ReadEnd::complete;
    }
    if (out.size() > limit) {
      return ReadEnd::too_large;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      return ReadEnd::eof;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN) {
      return ReadEnd::error;
    }
    if (!wait_for(fd, POLLIN, deadline)) {
      return ReadEnd::timeout;
    }
  }
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
  }
  return lines;
}

// One "<host>/<exe>/<id>" line of a request; nullopt unless exactly what the store writes.
std::optional<Located> parse_item(std::string_view line) {
  const size_t a = line.find('/');
  const size_t b = a == std::string_view::npos ? a : line.find('/', a + 1);
  if (b == std::string_view::npos || line.find('/', b + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  Located l{std::string(line.substr(0, a)), std::string(line.substr(a + 1, b - a - 1)),
            std::string(line.substr(b + 1))};
  if (!common::is_safe_component(l.host_dir) || !common::is_safe_component(l.exe_dir) ||
      !common::is_record_id(l.id)) {
    return std::nullopt;
  }
  return l;
}

// The request's items, or the reason it is refused as a whole.
std::expected<std::vector<Located>, std::string> parse_request(std::string_view text) {
  const size_t end = text.find("\n\n");
  if (end != std::string_view::npos) {
    if (end + 2 != text.size()) {
      return std::unexpected("data after the request");
    }
    text = text.substr(0, end + 1);
  }
  if (text.empty() || text.back() != '\n') {
    return std::unexpected("incomplete request");
  }
  const auto lines = split_lines(text.substr(0, text.size() - 1));
  if (lines.empty() || lines.front() != k_remove_hello) {
    return std::unexpected("not a process-core-remove 1 request");
  }
  if (lines.size() - 1 > k_remove_max_items) {
    return std::unexpected("more than " + std::to_string(k_remove_max_items) + " crashes");
  }
  std::vector<Located> items;
  for (size_t i = 1; i < lines.size(); ++i) {
    auto item = parse_item(lines[i]);
    if (!item) {
      return std::unexpected("malformed crash on line " + std::to_string(i + 1));
    }
    items.push_back(std::move(*item));
  }
  if (items.empty()) {
    return std::unexpected("no crash named");
  }
  return items;
}

} // namespace

int serve_remove(int fd, const common::Store& store) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(k_remove_io_timeout_ms);
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || len != sizeof peer) {
    std::fprintf(stderr, "process-core-remove: standard input is no connected AF_UNIX socket: %s\n",
                 std::strerror(errno));
    return 1;
  }
  auto refuse = [&](const std::string& why) {
    std::fprintf(stderr, "process-core-remove: uid %u: request refused: %s\n",
                 static_cast<unsigned>(peer.uid), why.c_str());
    send_all(fd, "error " + why + "\n", deadline);
    return 0;
  };
  std::string request;
  switch (read_until(fd, request, "\n\n", k_remove_max_request, deadline)) {
  case ReadEnd::complete:
  case ReadEnd::eof:
    break;
  case ReadEnd::too_large:
    return refuse("request larger than " + std::to_string(k_remove_max_request) + " bytes");
  case ReadEnd::timeout:
    return refuse("request not complete within " + std::to_string(k_remove_io_timeout_ms / 1000) +
                  " s");
  case ReadEnd::error:
    std::fprintf(stderr, "process-core-remove: uid %u: reading the request: %s\n",
                 static_cast<unsigned>(peer.uid), std::strerror(errno));
    return 0;
  }
  if (request.size() > k_remove_max_request) {
    return refuse("request larger than " + std::to_string(k_remove_max_request) + " bytes");
  }
  auto items = parse_request(request);
  if (!items) {
    return refuse(items.error());
  }
  const auto results = remove_crashes(store, *items, peer.uid);
  std::string answer = "ok\n";
  for (size_t i = 0; i < items->size(); ++i) {
    const auto& it = (*items)[i];
    answer += std::string(to_string(results[i])) + " " + it.id + "\n";
    std::fprintf(stderr, "process-core-remove: uid %u: %s %s\n", static_cast<unsigned>(peer.uid),
                 std::string(to_string(results[i])).c_str(),
                 printable(it.host_dir + "/" + it.exe_dir + "/" + it.id).c_str());
  }
  answer += "end\n";
  if (!send_all(fd, answer, deadline)) {
    std::fprintf(stderr, "process-core-remove: uid %u: the answer could not be sent\n",
                 static_cast<unsigned>(peer.uid));
  }
  return 0;
}

namespace {

// One request to the service: at most k_remove_max_items items.
std::expected<std::vector<RemoveResult>, std::string>
request_once(const std::string& path, const std::vector<Located>& items, size_t from, size_t to) {
  const std::string service = "the removal service " + common::quoted(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return std::unexpected("Cannot reach " + service + ": the path is too long for a socket");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  common::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return std::unexpected(std::string("Failed to create a socket: ") + std::strerror(errno));
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    return std::unexpected(
        "Cannot reach " + service + ": " + std::strerror(err) +
        ". A user's crashes are removed by that service, process-core-remove.socket (systemd, "
        "as root: systemctl enable --now process-core-remove.socket); without it (no systemd "
        "on this host, or not started) only root can remove crashes (sudo corectl remove)");
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(k_remove_client_timeout_ms);
  std::string request = std::string(k_remove_hello) + "\n";
  for (size_t i = from; i < to; ++i) {
    request += items[i].host_dir + "/" + items[i].exe_dir + "/" + items[i].id + "\n";
  }
  request += "\n";
  if (!send_all(fd.get(), request, deadline)) {
    return std::unexpected("Failed to send the request to " + service + ": " +
                           std::strerror(errno));
  }
  ::shutdown(fd.get(), SHUT_WR);
  // The answer is read as untrusted as the request: bounded in size and time, parsed strictly.
  std::string answer;
  const auto end = read_until(fd.get(), answer, "\nend\n", k_remove_max_answer, deadline);
  if (end == ReadEnd::timeout) {
    return std::unexpected(service + " did not answer within " +
                           std::to_string(k_remove_client_timeout_ms / 1000) + " s");
  }
  answer.resize(std::min(answer.size(), k_remove_max_answer + 1));
  const auto lines = split_lines(answer);
  if (!lines.empty() && lines.front().starts_with("error ")) {
    return std::unexpected(
        service + " refused the request: " + printable(lines.front().substr(6).substr(0, 200)));
  }
  const size_t n = to - from;
  if (end != ReadEnd::complete || answer.size() > k_remove_max_answer || lines.size() != n + 2 ||
      lines.front() != "ok" || lines.back() != "end") {
    return std::unexpected("Unexpected answer from " + service);
  }
  std::vector<RemoveResult> out;
  for (size_t i = 0; i < n; ++i) {
    const std::string_view line = lines[i + 1];
    const size_t sp = line.find(' ');
    const auto result = parse_remove_result(line.substr(0, sp));
    if (sp == std::string_view::npos || !result || line.substr(sp + 1) != items[from + i].id) {
      return std::unexpected("Unexpected answer from " + service);
    }
    out.push_back(*result);
  }
  return out;
}

} // namespace

std::expected<std::vector<RemoveResult>, std::string>
request_removal(const std::string& socket_path, const std::vector<Located>& items) {
  std::vector<RemoveResult> out;
  for (size_t from = 0; from < items.size(); from += k_remove_max_items) {
    auto part =
        request_once(socket_path, items, from, std::min(items.size(), from + k_remove_max_items));
    if (!part) {
      if (!out.empty()) {
        return std::unexpected(part.error() + " (after " + std::to_string(out.size()) +
                               " crash(es) were handled)");
      }
      return part;
    }
    out.insert(out.end(), part->begin(), part->end());
  }
  return out;
}

Exit cmd_remove(Context& ctx) {
  const Options& o = ctx.opts;
  if (o.matches.empty() && !o.has_filter_options()) {
    return report(Exit::usage, "remove takes the crashes to remove: ids or matches and filters, "
                               "as list takes them (corectl remove ID...)");
  }
  std::vector<Located> items;
  std::vector<std::string> shown; // what each item's line says besides the id
  Exit worst = Exit::ok;
  if (only_ids(o.matches) && !o.has_filter_options()) {
    for (const auto& word : o.matches) {
      const size_t eq = word.find('=');
      auto found = find_record(ctx, eq == std::string::npos ? word : word.substr(eq + 1));
      if (!found) {
        worst = std::max(worst, found.error());
        continue;
      }
      items.push_back(found->first);
      shown.push_back(printable(found->second.record.executable));
    }
  } else {
    auto filter = make_filter(o);
    if (!filter) {
      return report(Exit::usage, filter.error());
    }
    Catalog cat = load_catalog(*ctx.store, *filter, Cache::no);
    if (cat.problems.denied > 0 && cat.crashes.empty() && cat.problems.readable_dirs == 0) {
      return report(Exit::denied,
                    cat.problems.first + " (users may remove their own crashes, root any crash)");
    }
    for (const auto& c : cat.crashes) {
      if (filter->matches(c)) {
        items.push_back({c.host_dir, c.exe_dir, c.id});
        shown.push_back(printable(c.executable));
      }
    }
    if (items.empty()) {
      std::fputs("No crashes found.\n", stderr);
      return Exit::no_match;
    }
  }
  if (items.empty()) {
    return worst;
  }
  std::vector<RemoveResult> results;
  if (::geteuid() == 0) {
    results = remove_crashes(*ctx.store, items, 0);
  } else {
    const char* env = std::getenv(k_remove_socket_env);
    auto answered = request_removal(env && *env ? env : k_remove_socket, items);
    if (!answered) {
      return std::max(worst, report(Exit::failure, answered.error()));
    }
    results = std::move(*answered);
  }
  size_t removed = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    switch (results[i]) {
    case RemoveResult::removed:
      ++removed;
      std::printf("Removed %s  %s\n", items[i].id.c_str(), shown[i].c_str());
      break;
    case RemoveResult::not_yours:
      worst = std::max(worst, report(Exit::denied, "Not removed: " + items[i].id +
                                                       " is not your crash (users may remove "
                                                       "their own crashes, root any crash)"));
      break;
    case RemoveResult::not_found:
      worst = std::max(worst, report(Exit::not_found, "Not removed: no crash " + items[i].id));
      break;
    case RemoveResult::failed:
      worst = std::max(worst, report(Exit::failure, "Failed to remove " + items[i].id));
      break;
    }
  }
  std::printf("Removed %zu of %zu crash(es).\n", removed, items.size());
  return worst;
}

} // namespace cli
