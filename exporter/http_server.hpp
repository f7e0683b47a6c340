// A small HTTP/1.1 server for the exporter's few pages: IPv4 and IPv6, optional TLS and basic
// authentication (exporter-toolkit web configuration), one request per connection, and a stop
// that returns at once. Written here because CivetWeb as Debian 12 packages it (what
// prometheus-cpp's Exposer runs on) has no IPv6, wants key and certificate in one file, loads
// OpenSSL by its development name and takes up to 2 s to stop (see docs/exporter.md).
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
  std::string method; // GET or HEAD (others are answered 405 before any handler runs)
  std::string path;   // the target without its query string
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Called on a worker thread for every authenticated GET/HEAD.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// A listen address split into host and port: "127.0.0.1:9464", "[::1]:9464", ":9464" (every
// address, IPv6 and IPv4). The host is empty for the last form.
struct ListenAddress {
  std::string host;
  std::string port;
};

// Splits ADDR:PORT; the error says what is wrong with `text`.
common::Expected<ListenAddress> parse_listen_address(std::string_view text);

// Decodes standard base64 (with padding); an error on anything else.
common::Expected<std::string> base64_decode(std::string_view text);

class HttpServer {
public:
  // Binds every address (port 0: the kernel picks one), then serves on its own threads.
  static common::Expected<std::unique_ptr<HttpServer>>
  start(const std::vector<std::string>& addresses, const WebConfig& web, HttpHandler handler);

  // The bound addresses with their real ports, as "127.0.0.1:9464" or "[::1]:9464".
  const std::vector<std::string>& bound() const;

  // Stops accepting, interrupts requests in flight and joins the threads (milliseconds).
  ~HttpServer();

  struct Impl;

private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> m_impl;
};

} // namespace exporter
