#include "exporter/http_server.hpp"

#include "common/base/fd.hpp"
#include "common/base/parse.hpp"
#include "exporter/basic_auth.hpp"

#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <thread>

namespace exporter {

namespace {

using Clock = std::chrono::steady_clock;

// Every cost a client controls has a bound. Connections: an event loop holds them, so an idle
// one costs a slot and 16 KiB, not a thread; a client gets a few slots, all clients a few
// dozen. From accept to the end of the request head (TLS handshake included) a connection has
// k_head_time, counted from accept so that trickling bytes does not extend it; the response
// then has k_response_time. Past k_evict_at connections, each new one drops the oldest that
// is still in its head: idle connections go first, scrapes in progress stay.
constexpr unsigned k_max_connections = 64;
constexpr unsigned k_max_per_client = 8;
constexpr size_t k_evict_at = 48;
constexpr auto k_head_time = std::chrono::seconds(3);
constexpr auto k_response_time = std::chrono::seconds(30);
constexpr unsigned k_inactivity_seconds = 3; // libmicrohttpd's own timeout, before the head
constexpr unsigned k_response_inactivity_seconds = 30;
constexpr auto k_watch_interval = std::chrono::milliseconds(200);
// The per-connection memory pool: request head, headers and send buffer. A head larger than
// about half of it is answered 431.
constexpr size_t k_connection_memory = 16 << 10;
constexpr size_t k_stream_block = 16 << 10;
constexpr int k_backlog = 64;
// A changed web configuration file is noticed within this long (stat at most this often).
constexpr auto k_reload_interval = std::chrono::seconds(1);
// Old certificate generations are kept for sessions still using them.
constexpr size_t k_cert_generations = 8;
constexpr unsigned k_max_chain = 16;

// One loaded certificate chain and key, as GnuTLS's retrieve callback hands them out.
struct CertGeneration {
  std::vector<gnutls_pcert_st> chain;
  gnutls_privkey_t key = nullptr;
  ~CertGeneration() {
    for (auto& c : chain) {
      gnutls_pcert_deinit(&c);
    }
    if (key != nullptr) {
      gnutls_privkey_deinit(key);
    }
  }
};

common::Expected<std::shared_ptr<CertGeneration>> load_cert(const WebConfig& web) {
  auto gen = std::make_shared<CertGeneration>();
  gen->chain.resize(k_max_chain);
  unsigned n = k_max_chain;
  if (const int r = gnutls_pcert_list_import_x509_file(gen->chain.data(), &n, web.cert_file.c_str(),
                                                       GNUTLS_X509_FMT_PEM, nullptr, nullptr, 0);
      r < 0) {
    gen->chain.clear();
    return common::fail("Failed to load the certificate " + common::quoted(web.cert_file) + ": " +
                        gnutls_strerror(r));
  }
  gen->chain.resize(n);
  gnutls_datum_t pem{};
  if (const int r = gnutls_load_file(web.key_file.c_str(), &pem); r < 0) {
    return common::fail("Failed to load the key " + common::quoted(web.key_file) + ": " +
                        gnutls_strerror(r));
  }
  int r = gnutls_privkey_init(&gen->key);
  if (r >= 0) {
    r = gnutls_privkey_import_x509_raw(gen->key, &pem, GNUTLS_X509_FMT_PEM, nullptr, 0);
  }
  gnutls_free(pem.data);
  if (r < 0) {
    return common::fail("Failed to load the key " + common::quoted(web.key_file) + ": " +
                        gnutls_strerror(r));
  }
  // A key that does not belong to the certificate would fail every handshake: refuse it here.
  gnutls_pubkey_t cert_pub = gen->chain.front().pubkey;
  gnutls_pubkey_t key_pub = nullptr;
  gnutls_datum_t a{}, b{};
  bool same = gnutls_pubkey_init(&key_pub) >= 0 &&
              gnutls_pubkey_import_privkey(key_pub, gen->key, 0, 0) >= 0 &&
              gnutls_pubkey_export2(key_pub, GNUTLS_X509_FMT_DER, &a) >= 0 &&
              gnutls_pubkey_export2(cert_pub, GNUTLS_X509_FMT_DER, &b) >= 0 && a.size == b.size &&
              std::memcmp(a.data, b.data, a.size) == 0;
  gnutls_free(a.data);
  gnutls_free(b.data);
  if (key_pub != nullptr) {
    gnutls_pubkey_deinit(key_pub);
  }
  if (!same) {
    return common::fail("Failed to load the key " + common::quoted(web.key_file) +
                        ": it does not match the certificate " + common::quoted(web.cert_file));
  }
  return gen;
}

struct TrustDeleter {
  void operator()(gnutls_x509_trust_list_st* t) const { gnutls_x509_trust_list_deinit(t, 1); }
};
using TrustList = std::unique_ptr<gnutls_x509_trust_list_st, TrustDeleter>;

common::Expected<std::shared_ptr<TrustList>> load_trust(const std::string& ca_file) {
  gnutls_x509_trust_list_t list = nullptr;
  if (gnutls_x509_trust_list_init(&list, 0) < 0) {
    return common::fail("Failed to create a trust list: out of memory");
  }
  auto owned = std::make_shared<TrustList>(list);
  const int n = gnutls_x509_trust_list_add_trust_file(list, ca_file.c_str(), nullptr,
                                                      GNUTLS_X509_FMT_PEM, 0, 0);
  if (n <= 0) {
    return common::fail("Failed to load the client CA " + common::quoted(ca_file) + ": " +
                        (n < 0 ? gnutls_strerror(n) : "no certificate in it"));
  }
  return owned;
}

// What identifies a version of a file: a rewrite or a rename over it changes one of these.
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = -1;
  timespec mtime{};
  bool operator==(const FileStamp& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

FileStamp stamp(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) {
    return {};
  }
  return {st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

std::string client_address(MHD_Connection* c) {
  const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (info == nullptr || info->client_addr == nullptr) {
    return "";
  }
  char host[INET6_ADDRSTRLEN] = "";
  const sockaddr* sa = info->client_addr;
  if (sa->sa_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, host, sizeof host);
  } else if (sa->sa_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, host, sizeof host);
  }
  return host;
}

// The web configuration as currently in force: reloaded when its file changes, so a rotated
// certificate, key, client CA or user list applies to the next connection without a restart.
// TLS on or off, versions and cipher suites are fixed at start (libmicrohttpd sets them once).
class WebState {
public:
  WebState(std::string path, WebConfig web)
      : m_path(std::move(path)), m_web(std::move(web)), m_auth(m_web.users) {}

  common::Expected<void> init() {
    m_stamp = stamp(m_path);
    m_files = {stamp(m_web.cert_file), stamp(m_web.key_file), stamp(m_web.client_ca_file)};
    return install(m_web);
  }

  // Re-reads the file (and the files it names) if any changed; a broken new version is
  // logged and the old one kept.
  void refresh() {
    std::lock_guard lock(m_mutex);
    const auto now = Clock::now();
    if (now - m_checked < k_reload_interval) {
      return;
    }
    m_checked = now;
    const std::array<FileStamp, 3> files = {stamp(m_web.cert_file), stamp(m_web.key_file),
                                            stamp(m_web.client_ca_file)};
    const FileStamp s = stamp(m_path);
    if (s == m_stamp && files == m_files) {
      return;
    }
    m_stamp = s;
    m_files = files;
    auto web = m_path.empty() ? common::Expected<WebConfig>(m_web) : load_web_config(m_path);
    if (!web) {
      spdlog::warn("{}; keeping the previous web configuration", web.error().message);
      return;
    }
    if (web->tls() != m_web.tls() || web->min_version != m_web.min_version ||
        web->max_version != m_web.max_version || web->cipher_suites != m_web.cipher_suites ||
        web->client_auth != m_web.client_auth) {
      spdlog::warn("{}: TLS on or off, versions, cipher suites and client_auth_type change only "
                   "on restart",
                   common::quoted(m_path));
    }
    if (auto r = install_locked(*web); !r) {
      spdlog::warn("{}; keeping the previous certificates", r.error().message);
      return;
    }
    m_files = {stamp(web->cert_file), stamp(web->key_file), stamp(web->client_ca_file)};
    m_auth.set_users(web->users);
    const auto client_auth = m_web.client_auth;
    m_web = std::move(*web);
    m_web.client_auth = client_auth;
    spdlog::info("reloaded {}", common::quoted(m_path));
  }

  // The certificate for a new handshake.
  std::shared_ptr<CertGeneration> cert() {
    refresh();
    std::lock_guard lock(m_mutex);
    return m_certs.empty() ? nullptr : m_certs.back();
  }

  std::shared_ptr<TrustList> trust() {
    std::lock_guard lock(m_mutex);
    return m_trust;
  }

  const WebConfig& initial() const { return m_initial; }
  BasicAuth& auth() { return m_auth; }

private:
  common::Expected<void> install(const WebConfig& web) {
    std::lock_guard lock(m_mutex);
    m_initial = web;
    return install_locked(web);
  }

  common::Expected<void> install_locked(const WebConfig& web) {
    if (!web.tls()) {
      return {};
    }
    auto gen = load_cert(web);
    if (!gen) {
      return std::unexpected(gen.error());
    }
    std::shared_ptr<TrustList> trust;
    if (!web.client_ca_file.empty()) {
      auto t = load_trust(web.client_ca_file);
      if (!t) {
        return std::unexpected(t.error());
      }
      trust = std::move(*t);
    }
    // GnuTLS keeps using the chain it was handed for the session's life: older generations
    // stay for connections still open (k_response_time bounds them).
    m_certs.push_back(std::move(*gen));
    if (m_certs.size() > k_cert_generations) {
      m_certs.pop_front();
    }
    m_trust = std::move(trust);
    return {};
  }

  std::mutex m_mutex; // guards what follows: handshakes and requests run on server threads
  std::string m_path;
  WebConfig m_web;     // as last loaded
  WebConfig m_initial; // as at start: what the daemons were set up with
  FileStamp m_stamp;
  std::array<FileStamp, 3> m_files{}; // cert_file, key_file, client_ca_file
  Clock::time_point m_checked = Clock::now();
  std::deque<std::shared_ptr<CertGeneration>> m_certs;
  std::shared_ptr<TrustList> m_trust;
  BasicAuth m_auth;
};

// libmicrohttpd hands GnuTLS's certificate callback no user pointer: the one web state of the
// process is reached through this.
std::atomic<WebState*> g_web_state{nullptr};

int retrieve_cert(gnutls_session_t, const gnutls_datum_t*, int, const gnutls_pk_algorithm_t*, int,
                  gnutls_pcert_st** chain, unsigned int* chain_length, gnutls_privkey_t* key) {
  WebState* state = g_web_state.load();
  auto gen = state != nullptr ? state->cert() : nullptr;
  if (!gen) {
    return -1;
  }
  *chain = gen->chain.data();
  *chain_length = static_cast<unsigned>(gen->chain.size());
  *key = gen->key;
  return 0;
}

// One accepted connection, from libmicrohttpd's start notification to its close notification
// (which comes before the socket is closed, so `fd` is never a reused descriptor).
struct Connection {
  int fd = -1;
  Clock::time_point deadline; // of the request head, then of the response
  bool head_done = false;
};

} // namespace

struct HttpServer::Impl {
  struct Listener {
    MHD_Daemon* daemon = nullptr;
    std::mutex mutex; // guards connections (the daemon's thread and the watchdog)
    std::list<Connection> connections;
  };

  std::vector<std::unique_ptr<Listener>> listeners;
  std::vector<std::string> bound;
  std::unique_ptr<WebState> web;
  HttpHandler handler;
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread watchdog;

  ~Impl() {
    {
      std::lock_guard lock(stop_mutex);
      stopping = true;
    }
    stop_cv.notify_all();
    if (watchdog.joinable()) {
      watchdog.join();
    }
    for (auto& l : listeners) {
      MHD_stop_daemon(l->daemon);
    }
    g_web_state = nullptr;
  }

  void watch();
  HttpResponse respond(MHD_Connection* c, const char* url, const char* method);
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
                        ": write IPv6 addresses in brackets, [::1]:19464");
  }
  return ListenAddress{std::string(host), std::string(port)};
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
  // ":19464" means every address: the IPv6 wildcard, which also takes IPv4 (V6ONLY off).
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
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    bound = "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    bound = std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  return fd;
}

void on_connection(void* cls, MHD_Connection* c, void** socket_context,
                   MHD_ConnectionNotificationCode code) {
  auto* listener = static_cast<HttpServer::Impl::Listener*>(cls);
  std::lock_guard lock(listener->mutex);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    listener->connections.push_back(
        {info != nullptr ? info->connect_fd : -1, Clock::now() + k_head_time, false});
    auto it = std::prev(listener->connections.end());
    *socket_context = &*it;
    if (listener->connections.size() > k_evict_at) {
      // The oldest connection still in its head: shut down, libmicrohttpd then closes it.
      for (auto& old : listener->connections) {
        if (!old.head_done && &old != &*it && old.fd >= 0) {
          ::shutdown(old.fd, SHUT_RDWR);
          old.fd = -1;
          break;
        }
      }
    }
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context != nullptr) {
    auto* conn = static_cast<Connection*>(*socket_context);
    listener->connections.remove_if([&](const Connection& x) { return &x == conn; });
    *socket_context = nullptr;
  }
}

long stream_reader_call(void* cls, char* buf, size_t max) {
  return (*static_cast<std::function<long(char*, size_t)>*>(cls))(buf, max);
}

ssize_t stream_reader(void* cls, uint64_t, char* buf, size_t max) {
  const long n = stream_reader_call(cls, buf, max);
  if (n > 0) {
    return n;
  }
  return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

void stream_free(void* cls) {
  delete static_cast<std::function<long(char*, size_t)>*>(cls);
}

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method,
                      const char*, const char*, size_t*, void**) {
  auto* impl = static_cast<HttpServer::Impl*>(cls);
  // The head is complete: the head deadline gives way to the response's.
  const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  const auto* d = MHD_get_connection_info(c, MHD_CONNECTION_INFO_DAEMON);
  if (info != nullptr && info->socket_context != nullptr && d != nullptr) {
    for (auto& l : impl->listeners) {
      if (d->daemon == l->daemon) {
        std::lock_guard lock(l->mutex);
        auto* conn = static_cast<Connection*>(info->socket_context);
        conn->head_done = true;
        conn->deadline = Clock::now() + k_response_time;
      }
    }
  }
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, k_response_inactivity_seconds);
  HttpResponse r = impl->respond(c, url, method);
  MHD_Response* response = nullptr;
  if (r.stream) {
    response = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, k_stream_block, stream_reader,
        new std::function<long(char*, size_t)>(std::move(r.stream)), stream_free);
  } else {
    response = MHD_create_response_from_buffer(r.body.size(), r.body.data(), MHD_RESPMEM_MUST_COPY);
  }
  if (response == nullptr) {
    return MHD_NO;
  }
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
  if (!r.content_encoding.empty()) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_ENCODING, r.content_encoding.c_str());
  }
  if (r.status == 200 && r.stream) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_VARY, "Accept, Accept-Encoding");
  }
  if (r.status == 401) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                            "Basic realm=\"process-core-exporter\"");
  }
  const MHD_Result q = MHD_queue_response(c, static_cast<unsigned>(r.status), response);
  MHD_destroy_response(response);
  return q;
}

HttpResponse text(int status, std::string body) {
  return {status, "text/plain; charset=utf-8", std::move(body), "", {}};
}

// The client certificate as client_auth_type asks: "" when acceptable, else why not.
std::string check_client_cert(MHD_Connection* c, ClientAuth mode,
                              const std::shared_ptr<TrustList>& trust) {
  if (mode == ClientAuth::none || mode == ClientAuth::request) {
    return "";
  }
  const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (info == nullptr || info->tls_session == nullptr) {
    return "no TLS session";
  }
  auto session = static_cast<gnutls_session_t>(info->tls_session);
  unsigned n = 0;
  const gnutls_datum_t* peers = gnutls_certificate_get_peers(session, &n);
  if (peers == nullptr || n == 0) {
    return mode == ClientAuth::verify_if_given ? "" : "a client certificate is required";
  }
  if (mode == ClientAuth::require_any) {
    return "";
  }
  if (!trust) {
    return "no client CA";
  }
  std::vector<gnutls_x509_crt_t> chain;
  std::string problem;
  for (unsigned i = 0; i < std::min(n, k_max_chain) && problem.empty(); ++i) {
    gnutls_x509_crt_t crt = nullptr;
    if (gnutls_x509_crt_init(&crt) < 0) {
      problem = "out of memory";
      break;
    }
    chain.push_back(crt);
    if (gnutls_x509_crt_import(crt, &peers[i], GNUTLS_X509_FMT_DER) < 0) {
      problem = "an unreadable client certificate";
    }
  }
  if (problem.empty()) {
    gnutls_typed_vdata_st purpose{};
    purpose.type = GNUTLS_DT_KEY_PURPOSE_OID;
    purpose.data = reinterpret_cast<unsigned char*>(const_cast<char*>(GNUTLS_KP_TLS_WWW_CLIENT));
    unsigned status = 0;
    if (gnutls_x509_trust_list_verify_crt2(trust->get(), chain.data(),
                                           static_cast<unsigned>(chain.size()), &purpose, 1, 0,
                                           &status, nullptr) < 0 ||
        status != 0) {
      problem = "the client certificate does not verify against client_ca_file";
    }
  }
  for (auto* crt : chain) {
    gnutls_x509_crt_deinit(crt);
  }
  return problem;
}

} // namespace

HttpResponse HttpServer::Impl::respond(MHD_Connection* c, const char* url, const char* method) {
  HttpRequest request;
  request.method = method != nullptr ? method : "";
  request.path = url != nullptr ? url : "";
  if (!request.path.starts_with('/')) {
    return text(400, "Bad request\n");
  }
  if (request.method != "GET" && request.method != "HEAD") {
    return text(405, "Only GET and HEAD\n");
  }
  web->refresh();
  if (web->initial().tls()) {
    if (auto why = check_client_cert(c, web->initial().client_auth, web->trust()); !why.empty()) {
      return text(403, "Forbidden: " + why + "\n");
    }
  }
  if (web->auth().enabled()) {
    const char* authorization =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    switch (web->auth().check(authorization, client_address(c), Clock::now())) {
    case AuthResult::ok:
      break;
    case AuthResult::denied:
      return text(401, "Unauthorized\n");
    case AuthResult::throttled:
      return text(429, "Too many failed logins, try again later\n");
    }
  }
  const char* accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
  const char* encoding =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
  request.accept = accept != nullptr ? accept : "";
  request.accept_encoding = encoding != nullptr ? encoding : "";
  return handler(request);
}

void HttpServer::Impl::watch() {
  std::unique_lock lock(stop_mutex);
  while (!stop_cv.wait_for(lock, k_watch_interval, [&] { return stopping; })) {
    const auto now = Clock::now();
    for (auto& l : listeners) {
      std::lock_guard conns(l->mutex);
      for (auto& conn : l->connections) {
        if (conn.fd >= 0 && now > conn.deadline) {
          ::shutdown(conn.fd, SHUT_RDWR); // libmicrohttpd sees the end and closes it
          conn.fd = -1;
        }
      }
    }
  }
}

common::Expected<std::unique_ptr<HttpServer>>
HttpServer::start(const std::vector<std::string>& addresses, const std::string& web_path,
                  const WebConfig& web, HttpHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->web = std::make_unique<WebState>(web_path, web);
  if (auto r = impl->web->init(); !r) {
    return std::unexpected(r.error());
  }
  impl->handler = std::move(handler);
  std::string priorities;
  std::string trust_pem;
  if (web.tls()) {
    auto p = gnutls_priorities(web);
    if (!p) {
      return std::unexpected(p.error());
    }
    priorities = *p;
    // libmicrohttpd would only fail to start: say which setting GnuTLS refuses.
    gnutls_priority_t check = nullptr;
    const char* err = nullptr;
    if (gnutls_priority_init(&check, priorities.c_str(), &err) < 0) {
      return common::fail("GnuTLS refuses the priorities " + common::quoted(priorities) +
                          " made of min_version, max_version and cipher_suites");
    }
    gnutls_priority_deinit(check);
    if (!web.client_ca_file.empty()) {
      gnutls_datum_t pem{};
      if (const int r = gnutls_load_file(web.client_ca_file.c_str(), &pem); r < 0) {
        return common::fail("Failed to load the client CA " + common::quoted(web.client_ca_file) +
                            ": " + gnutls_strerror(r));
      }
      trust_pem.assign(reinterpret_cast<const char*>(pem.data), pem.size);
      gnutls_free(pem.data);
    }
    g_web_state = impl->web.get();
  }
  for (const auto& a : addresses) {
    std::string bound;
    auto fd = bind_one(a, bound);
    if (!fd) {
      return std::unexpected(fd.error());
    }
    auto listener = std::make_unique<Impl::Listener>();
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD;
    const int sock = fd->get();
    if (web.tls()) {
      flags |= MHD_USE_TLS;
      // With a client CA, libmicrohttpd asks every client for a certificate; whether one is
      // required and verified is decided per request (check_client_cert()).
      listener->daemon = MHD_start_daemon(
          flags, 0, nullptr, nullptr, on_request, impl.get(), MHD_OPTION_LISTEN_SOCKET, sock,
          MHD_OPTION_CONNECTION_LIMIT, k_max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
          k_max_per_client, MHD_OPTION_CONNECTION_TIMEOUT, k_inactivity_seconds,
          MHD_OPTION_CONNECTION_MEMORY_LIMIT, k_connection_memory, MHD_OPTION_NOTIFY_CONNECTION,
          on_connection, listener.get(), MHD_OPTION_HTTPS_PRIORITIES, priorities.c_str(),
          MHD_OPTION_HTTPS_CERT_CALLBACK, &retrieve_cert,
          trust_pem.empty() ? MHD_OPTION_END : MHD_OPTION_HTTPS_MEM_TRUST, trust_pem.c_str(),
          MHD_OPTION_END);
    } else {
      listener->daemon = MHD_start_daemon(
          flags, 0, nullptr, nullptr, on_request, impl.get(), MHD_OPTION_LISTEN_SOCKET, sock,
          MHD_OPTION_CONNECTION_LIMIT, k_max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
          k_max_per_client, MHD_OPTION_CONNECTION_TIMEOUT, k_inactivity_seconds,
          MHD_OPTION_CONNECTION_MEMORY_LIMIT, k_connection_memory, MHD_OPTION_NOTIFY_CONNECTION,
          on_connection, listener.get(), MHD_OPTION_END);
    }
    if (listener->daemon == nullptr) {
      return common::fail("Failed to start the HTTP server on " + common::quoted(a));
    }
    (void)fd->release(); // the daemon closes it when it stops
    impl->listeners.push_back(std::move(listener));
    impl->bound.push_back(std::move(bound));
  }
  impl->watchdog = std::thread([p = impl.get()] { p->watch(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

const std::vector<std::string>& HttpServer::bound() const {
  return m_impl->bound;
}

HttpServer::~HttpServer() = default;

} // namespace exporter
