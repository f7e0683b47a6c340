// The exporter's HTTP(S) side on libmicrohttpd: one epoll thread per listen address, so idle
// or slow clients cost a connection slot, never a worker. Our policy on top: per-client and
// total connection caps, a deadline from accept to the end of the request head (TLS handshake
// included) that drops idle connections first, the web configuration's TLS settings on GnuTLS
// (re-read when the file changes), and basic authentication (see docs/exporter.md).
#pragma once

#include "common/base/error.hpp"
#include "exporter/web_config.hpp"

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace exporter {

struct HttpRequest {
  std::string method;          // GET or HEAD (others are answered 405 before any handler runs)
  std::string path;            // the target without its query string
  std::string accept;          // the Accept header ("" when absent)
  std::string accept_encoding; // the Accept-Encoding header ("" when absent)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;             // the body, unless `stream` is set
  std::string content_encoding; // "gzip" or empty
  // Writes up to n bytes of the body into buf: bytes written, 0 at the end, -1 on error.
  // Called on the server thread as the client reads, so a large body is never held at once.
  std::function<long(char* buf, size_t n)> stream;
};

// Called on the server thread for every authenticated GET/HEAD.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// A listen address split into host and port: "127.0.0.1:19464", "[::1]:19464", ":19464" (every
// address, IPv6 and IPv4). The host is empty for the last form.
struct ListenAddress {
  std::string host;
  std::string port;
};

// Splits ADDR:PORT; the error says what is wrong with `text`.
common::Expected<ListenAddress> parse_listen_address(std::string_view text);

class HttpServer {
public:
  // Binds every address (port 0: the kernel picks one), then serves on libmicrohttpd's
  // threads. `web_path` is the web configuration file (empty: none), re-read when it changes;
  // `web` is its content as loaded at start.
  static common::Expected<std::unique_ptr<HttpServer>>
  start(const std::vector<std::string>& addresses, const std::string& web_path,
        const WebConfig& web, HttpHandler handler);

  // The bound addresses with their real ports, as "127.0.0.1:19464" or "[::1]:19464".
  const std::vector<std::string>& bound() const;

  // Stops the daemons: connections in flight are closed (milliseconds).
  ~HttpServer();

  struct Impl;

private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> m_impl;
};

} // namespace exporter
