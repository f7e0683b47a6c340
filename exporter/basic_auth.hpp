// Basic authentication against the bcrypt hashes of the web configuration: the same bcrypt
// work for known and unknown users (no username oracle), verified credentials remembered so a
// scraper does not pay bcrypt on every scrape, and a bound on the failures a client may cause.
#pragma once

#include "common/base/error.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace exporter {

// Decodes standard base64 (with padding); an error on anything else.
common::Expected<std::string> base64_decode(std::string_view text);

// What a request's credentials are worth.
enum class AuthResult {
  ok,        // a configured user with the right password
  denied,    // missing, malformed or wrong credentials: 401
  throttled, // too many failures from this client lately: 429, no bcrypt spent
};

class BasicAuth {
public:
  using Clock = std::chrono::steady_clock;

  // `users` maps names to bcrypt hashes; empty means no authentication.
  explicit BasicAuth(std::map<std::string, std::string> users);

  // True when users are configured, so every request needs credentials.
  bool enabled() const { return !m_users.empty(); }

  // Checks an Authorization header value (nullptr when absent) sent by `client` (its address).
  AuthResult check(const char* authorization, const std::string& client, Clock::time_point now);

  // Installs a re-read user list; remembered credentials of the old one are forgotten.
  void set_users(std::map<std::string, std::string> users);

private:
  struct Failures {
    unsigned count = 0;
    Clock::time_point since;
  };

  std::mutex m_mutex; // guards every member below: requests run on the server's thread
  std::map<std::string, std::string> m_users;
  std::string m_dummy_hash; // of the users' highest bcrypt cost, for unknown names
  std::unordered_set<std::string> m_verified;           // SHA-256 of user, password and hash
  std::unordered_map<std::string, Failures> m_failures; // by client address
};

} // namespace exporter
