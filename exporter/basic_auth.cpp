#include "exporter/basic_auth.hpp"

#include "common/base/sha256.hpp"
#include "exporter/web_config.hpp"

#include <crypt.h>

#include <algorithm>
#include <cctype>
#include <memory>

namespace exporter {

namespace {

// A client that failed this often within the window is answered 429 without bcrypt: each
// failure costs tens of milliseconds of CPU (bcrypt cost 10), and the server has one thread.
constexpr unsigned k_max_failures = 5;
constexpr auto k_failure_window = std::chrono::seconds(60);
// Bounds on the two tables a client can grow; past them they are emptied (losing only speed,
// or a few failures' worth of throttling).
constexpr size_t k_max_clients = 4096;
constexpr size_t k_max_verified = 64;

bool iequals_prefix(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), text.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         });
}

// A hash of a random password with the users' highest cost: an unknown name then costs the
// bcrypt work a known one does, so response times do not tell which names exist.
std::string make_dummy_hash(const std::map<std::string, std::string>& users) {
  std::string cost; // two digits, so the highest sorts last
  for (const auto& [name, hash] : users) {
    if (hash.size() > 6 && hash.substr(4, 2) > cost) {
      cost = hash.substr(4, 2);
    }
  }
  if (cost.empty()) {
    cost = "10";
  }
  auto data = std::make_unique<crypt_data>();
  const std::string setting = "$2b$" + cost + "$" + std::string(22, 'A');
  const char* out = crypt_r("process-core dummy password", setting.c_str(), data.get());
  return out != nullptr && out[0] != '*' ? std::string(out) : setting;
}

} // namespace

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

BasicAuth::BasicAuth(std::map<std::string, std::string> users) {
  set_users(std::move(users));
}

void BasicAuth::set_users(std::map<std::string, std::string> users) {
  std::string dummy = make_dummy_hash(users);
  std::lock_guard lock(m_mutex);
  m_users = std::move(users);
  m_dummy_hash = std::move(dummy);
  m_verified.clear();
}

AuthResult BasicAuth::check(const char* authorization, const std::string& client,
                            Clock::time_point now) {
  std::string user;
  std::string password;
  bool parsed = false;
  if (authorization != nullptr) {
    std::string_view value(authorization);
    if (iequals_prefix(value, "basic ")) {
      value.remove_prefix(6);
      while (!value.empty() && value.front() == ' ') {
        value.remove_prefix(1);
      }
      auto decoded = base64_decode(value);
      if (decoded && decoded->find(':') != std::string::npos) {
        user = decoded->substr(0, decoded->find(':'));
        password = decoded->substr(decoded->find(':') + 1);
        parsed = true;
      }
    }
  }
  if (!parsed) {
    // No user name, so nothing to reveal: refused without bcrypt, and not counted as a failure
    // (a browser's first request has no credentials).
    return AuthResult::denied;
  }
  std::string hash;
  std::string key;
  {
    std::lock_guard lock(m_mutex);
    const auto known = m_users.find(user);
    hash = known != m_users.end() ? known->second : m_dummy_hash;
    if (known != m_users.end()) {
      key = common::sha256_hex(user + '\0' + password + '\0' + hash);
      if (m_verified.contains(key)) {
        return AuthResult::ok;
      }
    }
    if (auto f = m_failures.find(client); f != m_failures.end()) {
      if (now - f->second.since > k_failure_window) {
        m_failures.erase(f);
      } else if (f->second.count >= k_max_failures) {
        return AuthResult::throttled;
      }
    }
  }
  // bcrypt outside the lock, for unknown names too (against the dummy hash, which no password
  // matches that the result is then used for).
  const bool matches = password_matches(password, hash) && !key.empty();
  std::lock_guard lock(m_mutex);
  if (matches) {
    if (m_verified.size() >= k_max_verified) {
      m_verified.clear();
    }
    m_verified.insert(key);
    m_failures.erase(client);
    return AuthResult::ok;
  }
  if (m_failures.size() >= k_max_clients && !m_failures.contains(client)) {
    m_failures.clear();
  }
  auto& f = m_failures[client];
  if (f.count == 0) {
    f.since = now;
  }
  ++f.count;
  return AuthResult::denied;
}

} // namespace exporter
