// corectl remove: users remove their own crashes, root any crash (see docs/corectl.md).
//
// Users do not own the store's files (the store user does), so a user's corectl hands the ids to
// the removal service, process-core-remove: systemd accepts each connection on
// /run/process-core-remove.sock (process-core-remove.socket, Accept=yes) and runs one instance
// per connection as the store user, with the connection on its stdin. The service learns who
// asks from the kernel (SO_PEERCRED), never from the request, and removes a crash only when it
// is the requester's (root: any crash). Root's corectl removes directly, through the same code.
//
// The protocol, text lines ending in '\n', both ways untrusted and bounded:
//   request:  "process-core-remove 1", then one "<host>/<exe>/<id>" per crash (store
//             components and a full record id, at most k_remove_max_items), then an empty line
//             (or the end of the stream); at most k_remove_max_request bytes in all.
//   answer:   "ok", one "<result> <id>" per crash in the request's order, "end"; or one
//             "error <reason>" line for a request that is refused as a whole.
#pragma once

#include "cli/catalog/catalog.hpp"
#include "common/store/store.hpp"

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

inline constexpr const char* k_remove_socket = "/run/process-core-remove.sock";
// Names another socket (tests, a second installation); root never uses the socket.
inline constexpr const char* k_remove_socket_env = "PROCESS_CORE_REMOVE_SOCKET";
inline constexpr std::string_view k_remove_hello = "process-core-remove 1";
inline constexpr size_t k_remove_max_items = 100;
// 100 lines of two 255-byte components and an id fit; nothing larger is read.
inline constexpr size_t k_remove_max_request = 64 << 10;
// The longest answer: "not-yours " + id per item, with the framing lines.
inline constexpr size_t k_remove_max_answer = 4 << 10;
// A connection's whole life on the service's side (reading the request, writing the answer).
inline constexpr int k_remove_io_timeout_ms = 10'000;
// How long corectl waits for the service (its removals take the store lock behind a vacuum).
inline constexpr int k_remove_client_timeout_ms = 60'000;

enum class RemoveResult { removed, not_yours, not_found, failed };
std::string_view to_string(RemoveResult r);
std::optional<RemoveResult> parse_remove_result(std::string_view word);

// Whether `requester` may remove `record`: root any crash; a user exactly the crashes corectl
// shows them (their uid, and a core their own: core.access = owner).
bool may_remove(uid_t requester, const common::Record& record);

// Removes each crash that `requester` may remove, through the ledger as vacuum retires records
// (core, record, and the link in the user's view; the crash stays counted). One answer per
// item, in order. Items are untrusted: components and ids are checked before any use.
std::vector<RemoveResult> remove_crashes(const common::Store& store,
                                         const std::vector<Located>& items, uid_t requester);

// Serves one connection `fd` (a connected AF_UNIX stream socket) on `store`: reads the request
// within k_remove_io_timeout_ms, removes for the peer's uid (SO_PEERCRED), answers. Logs each
// removal on stderr. Returns the process's exit status (0 also for a refused request).
int serve_remove(int fd, const common::Store& store);

// Sends `items` (in requests of at most k_remove_max_items) to the service at `socket_path`;
// the answers in order, or the message of why there are none.
std::expected<std::vector<RemoveResult>, std::string>
request_removal(const std::string& socket_path, const std::vector<Located>& items);

} // namespace cli
