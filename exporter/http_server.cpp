#include "exporter/http_server.hpp"

#include "common/base/fd.hpp"
#include "common/base/parse.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

namespace exporter {

namespace {

using Clock = std::chrono::steady_clock;

// Every cost a client controls has a bound: the request head, the time a connection may take
// (a slow client cannot hold a worker longer), the connections waiting for a worker.
constexpr size_t k_max_request = 8192;
constexpr auto k_request_time = std::chrono::seconds(5);   // TLS handshake and request head
constexpr auto k_response_time = std::chrono::seconds(30); // the response, a large one included
constexpr size_t k_workers = 2; // Prometheus scrapes one at a time; a second serves a human
constexpr size_t k_max_queued = 16;
constexpr int k_backlog = 16;

std::string_view status_text(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 431:
    return "Request Header Fields Too Large";
  case 503:
    return "Service Unavailable";
  default:
    return "Internal Server Error";
  }
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

std::string ssl_error() {
  char buf[256] = "unknown TLS error";
  if (const unsigned long e = ERR_get_error(); e != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
  }
  return buf;
}

} // namespace

struct HttpServer::Impl {
  std::vector<common::UniqueFd> listeners;
  std::vector<std::string> bound;
  WebConfig web;
  HttpHandler handler;
  std::unique_ptr<SSL_CTX, SslCtxDeleter> tls;
  common::UniqueFd stop_fd; // an eventfd: readable once stopping, wakes every poll()
  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<common::UniqueFd> queue;
  std::thread acceptor;
  std::vector<std::thread> workers;

  void accept_loop();
  void work_loop();
  void serve(int fd);
  // Waits until `fd` is ready for `events`; false on the deadline, stop or error.
  bool wait(int fd, short events, Clock::time_point deadline) const;
  HttpResponse respond(std::string_view head);
  bool authorized(std::string_view head) const;
};

common::Expected<ListenAddress> parse_listen_address(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return common::fail("listen address " + common::quoted(text) + " needs ADDR:PORT");
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (!common::parse_number<uint16_t>(port)) {
    return common::fail("listen address " + common::quoted(text) + " has no valid port");
  }
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) {
      return common::fail("listen address " + common::quoted(text) + " has an unclosed '['");
    }
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return common::fail("listen address " + common::quoted(text) +
                        ": write IPv6 addresses in brackets, [::1]:9464");
  }
  return ListenAddress{std::string(host), std::string(port)};
}

common::Expected<std::string> base64_decode(std::string_view text) {
  static constexpr std::string_view k_alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (text.size() % 4 != 0) {
    return common::fail("base64 length is not a multiple of 4");
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    unsigned value = 0;
    int pad = 0;
    for (size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      size_t digit = 0;
      if (c == '=' && i + 4 == text.size() && j >= 2) {
        ++pad;
      } else if (pad == 0 && (digit = k_alphabet.find(c)) != std::string_view::npos) {
        value |= static_cast<unsigned>(digit);
      } else {
        return common::fail("invalid base64");
      }
      value <<= (j < 3 ? 6 : 0);
    }
    out.push_back(static_cast<char>(value >> 16));
    if (pad < 2) {
      out.push_back(static_cast<char>((value >> 8) & 0xff));
    }
    if (pad < 1) {
      out.push_back(static_cast<char>(value & 0xff));
    }
  }
  return out;
}

namespace {

common::Expected<common::UniqueFd> bind_one(const std::string& text, std::string& bound) {
  auto address = parse_listen_address(text);
  if (!address) {
    return std::unexpected(address.error());
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  // ":9464" means every address: the IPv6 wildcard, which also takes IPv4 (V6ONLY off).
  const bool any = address->host.empty();
  if (any) {
    hints.ai_family = AF_INET6;
  }
  addrinfo* found = nullptr;
  if (const int r = ::getaddrinfo(any ? nullptr : address->host.c_str(), address->port.c_str(),
                                  &hints, &found);
      r != 0) {
    return common::fail("Failed to resolve " + common::quoted(text) + ": " + ::gai_strerror(r));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, ::freeaddrinfo);
  common::UniqueFd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) {
    return common::fail_errno("Failed to create a socket for " + common::quoted(text), errno);
  }
  const int one = 1;
  const int v6only = any ? 0 : 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (found->ai_family == AF_INET6) {
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  if (::bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0 ||
      ::listen(fd.get(), k_backlog) != 0) {
    return common::fail_errno("Failed to listen on " + common::quoted(text), errno);
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  char host[INET6_ADDRSTRLEN] = "";
  unsigned port = 0;
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    bound = "[" + std::string(host) + "]:" + std::to_string(port);
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    bound = std::string(host) + ":" + std::to_string(port);
  }
  return fd;
}

common::Expected<std::unique_ptr<SSL_CTX, SslCtxDeleter>> make_tls(const WebConfig& web) {
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    return common::fail("Failed to create a TLS context: " + ssl_error());
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION); // as the exporter-toolkit default
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), web.cert_file.c_str()) != 1) {
    return common::fail("Failed to load the certificate " + common::quoted(web.cert_file) + ": " +
                        ssl_error());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), web.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    return common::fail("Failed to load the key " + common::quoted(web.key_file) + ": " +
                        ssl_error());
  }
  return ctx;
}

} // namespace

common::Expected<std::unique_ptr<HttpServer>>
HttpServer::start(const std::vector<std::string>& addresses, const WebConfig& web,
                  HttpHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->web = web;
  impl->handler = std::move(handler);
  if (web.tls()) {
    auto tls = make_tls(web);
    if (!tls) {
      return std::unexpected(tls.error());
    }
    impl->tls = std::move(*tls);
  }
  for (const auto& a : addresses) {
    std::string bound;
    auto fd = bind_one(a, bound);
    if (!fd) {
      return std::unexpected(fd.error());
    }
    impl->listeners.push_back(std::move(*fd));
    impl->bound.push_back(std::move(bound));
  }
  impl->stop_fd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (impl->stop_fd.get() < 0) {
    return common::fail_errno("Failed to create an eventfd", errno);
  }
  impl->acceptor = std::thread([p = impl.get()] { p->accept_loop(); });
  for (size_t i = 0; i < k_workers; ++i) {
    impl->workers.emplace_back([p = impl.get()] { p->work_loop(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

const std::vector<std::string>& HttpServer::bound() const {
  return m_impl->bound;
}

HttpServer::~HttpServer() {
  {
    std::lock_guard lock(m_impl->mutex);
    m_impl->stopping = true;
  }
  const uint64_t one = 1;
  (void)!::write(m_impl->stop_fd.get(), &one, sizeof one);
  m_impl->ready.notify_all();
  m_impl->acceptor.join();
  for (auto& w : m_impl->workers) {
    w.join();
  }
}

void HttpServer::Impl::accept_loop() {
  std::vector<pollfd> fds;
  for (const auto& l : listeners) {
    fds.push_back({l.get(), POLLIN, 0});
  }
  fds.push_back({stop_fd.get(), POLLIN, 0});
  while (!stopping) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    for (size_t i = 0; i + 1 < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) {
        continue;
      }
      common::UniqueFd conn(::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (conn.get() < 0) {
        if (errno == EMFILE || errno == ENFILE) {
          // The connection stays pending and poll() would report it again at once: wait a
          // little (or for the stop) instead of spinning.
          pollfd stop{stop_fd.get(), POLLIN, 0};
          ::poll(&stop, 1, 100);
        }
        continue; // otherwise the client gave up: the next poll() goes on
      }
      std::lock_guard lock(mutex);
      if (queue.size() < k_max_queued) { // beyond: closed at once, the client retries
        queue.push_back(std::move(conn));
        ready.notify_one();
      }
    }
  }
}

void HttpServer::Impl::work_loop() {
  for (;;) {
    common::UniqueFd conn;
    {
      std::unique_lock lock(mutex);
      ready.wait(lock, [&] { return stopping || !queue.empty(); });
      if (stopping) {
        return;
      }
      conn = std::move(queue.front());
      queue.pop_front();
    }
    serve(conn.get());
  }
}

bool HttpServer::Impl::wait(int fd, short events, Clock::time_point deadline) const {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 || stopping) {
      return false;
    }
    pollfd fds[2] = {{fd, events, 0}, {stop_fd.get(), POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(left));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    return n > 0 && (fds[1].revents & POLLIN) == 0 && (fds[0].revents & (events | POLLHUP)) != 0;
  }
}

void HttpServer::Impl::serve(int fd) {
  auto deadline = Clock::now() + k_request_time;
  std::unique_ptr<SSL, SslDeleter> ssl;
  // One step of TLS I/O: retries while OpenSSL wants the socket readable or writable.
  auto tls_io = [&](auto&& op) -> int {
    for (;;) {
      const int r = op();
      if (r > 0) {
        return r;
      }
      const int e = SSL_get_error(ssl.get(), r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          return -1;
        }
        continue;
      }
      return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
  };
  if (tls) {
    ssl.reset(SSL_new(tls.get()));
    if (!ssl || SSL_set_fd(ssl.get(), fd) != 1 ||
        tls_io([&] { return SSL_accept(ssl.get()); }) <= 0) {
      ERR_clear_error();
      return;
    }
  }
  auto read_some = [&](char* buf, size_t n) -> ssize_t {
    if (ssl) {
      return tls_io([&] { return SSL_read(ssl.get(), buf, static_cast<int>(n)); });
    }
    for (;;) {
      const ssize_t r = ::recv(fd, buf, n, 0);
      if (r >= 0) {
        return r;
      }
      if ((errno != EAGAIN && errno != EINTR) || !wait(fd, POLLIN, deadline)) {
        return -1;
      }
    }
  };
  auto write_all = [&](std::string_view data) {
    while (!data.empty()) {
      ssize_t w = 0;
      if (ssl) {
        w = tls_io(
            [&] { return SSL_write(ssl.get(), data.data(), static_cast<int>(data.size())); });
      } else {
        w = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
          if (!wait(fd, POLLOUT, deadline)) {
            return;
          }
          continue;
        }
      }
      if (w <= 0) {
        return;
      }
      data.remove_prefix(static_cast<size_t>(w));
    }
  };

  // The request head, up to the blank line; a body (none is expected) is never read.
  std::string head;
  size_t end = std::string::npos;
  char buf[2048];
  while ((end = head.find("\r\n\r\n")) == std::string::npos && head.size() < k_max_request) {
    const ssize_t n = read_some(buf, std::min(sizeof buf, k_max_request - head.size()));
    if (n <= 0) {
      ERR_clear_error();
      return;
    }
    head.append(buf, static_cast<size_t>(n));
  }
  HttpResponse response;
  if (end == std::string::npos) {
    response = {431, "text/plain; charset=utf-8", "Request header too large\n"};
  } else {
    head.resize(end + 2);
    response = respond(head);
  }
  const bool is_head = head.starts_with("HEAD ");
  deadline = Clock::now() + k_response_time;
  std::string out =
      "HTTP/1.1 " + std::to_string(response.status) + " " +
      std::string(status_text(response.status)) + "\r\nContent-Type: " + response.content_type +
      "\r\nContent-Length: " + std::to_string(response.body.size()) + "\r\nConnection: close\r\n";
  if (response.status == 401) {
    out += "WWW-Authenticate: Basic realm=\"process-core-exporter\"\r\n";
  }
  out += "\r\n";
  if (!is_head) {
    out += response.body;
  }
  write_all(out);
  if (ssl) {
    SSL_shutdown(ssl.get()); // one close_notify; not waiting for the client's
  }
  ERR_clear_error();
}

HttpResponse HttpServer::Impl::respond(std::string_view head) {
  const HttpResponse bad{400, "text/plain; charset=utf-8", "Bad request\n"};
  const size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1 || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    return bad;
  }
  HttpRequest request;
  request.method = std::string(line.substr(0, sp1));
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  request.path = std::string(target.substr(0, target.find('?')));
  if (!request.path.starts_with('/')) {
    return bad;
  }
  if (request.method != "GET" && request.method != "HEAD") {
    return {405, "text/plain; charset=utf-8", "Only GET and HEAD\n"};
  }
  if (!authorized(head.substr(eol + 2))) {
    return {401, "text/plain; charset=utf-8", "Unauthorized\n"};
  }
  return handler(request);
}

bool HttpServer::Impl::authorized(std::string_view headers) const {
  if (web.users.empty()) {
    return true;
  }
  while (!headers.empty()) {
    const size_t eol = headers.find("\r\n");
    const std::string_view line = headers.substr(0, eol);
    headers = eol == std::string_view::npos ? std::string_view() : headers.substr(eol + 2);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !iequals(line.substr(0, colon), "authorization")) {
      continue;
    }
    const std::string_view value = common::trim_blanks(line.substr(colon + 1));
    if (value.size() < 6 || !iequals(value.substr(0, 6), "basic ")) {
      return false;
    }
    auto decoded = base64_decode(common::trim_blanks(value.substr(6)));
    if (!decoded) {
      return false;
    }
    const size_t sep = decoded->find(':');
    if (sep == std::string::npos) {
      return false;
    }
    const auto user = web.users.find(decoded->substr(0, sep));
    return user != web.users.end() &&
           password_matches(std::string_view(*decoded).substr(sep + 1), user->second);
  }
  return false;
}

} // namespace exporter
