// Force-included (-include) into the store-reader fuzz targets. They are built with clang 14,
// whose libstdc++ 12 <expected> is empty (it needs C++20 concepts clang 14 does not report), so
// the readers' Expected<T> is given a minimal stand-in here: only what common/ and cli/ use.
// Never part of a product build.
#pragma once

#include <expected>
#include <version>

#if !defined(__cpp_lib_expected)
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

namespace std {

template <typename E>
class unexpected {
public:
  explicit unexpected(E e) : m_e(std::move(e)) {}
  const E& error() const& { return m_e; }
  E& error() & { return m_e; }
  E&& error() && { return std::move(m_e); }

private:
  E m_e;
};
template <typename E>
unexpected(E) -> unexpected<E>;

template <typename T, typename E>
class expected {
public:
  using value_type = T;
  using error_type = E;
  expected() : m_v(std::in_place_index<0>) {}
  template <typename U = T, typename = enable_if_t<is_constructible_v<T, U&&> &&
                                                   !is_same_v<remove_cvref_t<U>, expected>>>
  expected(U&& v) : m_v(std::in_place_index<0>, std::forward<U>(v)) {}
  template <typename G>
  expected(const unexpected<G>& u) : m_v(std::in_place_index<1>, u.error()) {}
  template <typename G>
  expected(unexpected<G>&& u) : m_v(std::in_place_index<1>, std::move(u).error()) {}
  bool has_value() const { return m_v.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& operator*() & { return std::get<0>(m_v); }
  const T& operator*() const& { return std::get<0>(m_v); }
  T&& operator*() && { return std::get<0>(std::move(m_v)); }
  T* operator->() { return &std::get<0>(m_v); }
  const T* operator->() const { return &std::get<0>(m_v); }
  T& value() & { return std::get<0>(m_v); }
  const T& value() const& { return std::get<0>(m_v); }
  E& error() & { return std::get<1>(m_v); }
  const E& error() const& { return std::get<1>(m_v); }
  template <typename U>
  T value_or(U&& d) const& {
    return has_value() ? **this : static_cast<T>(std::forward<U>(d));
  }

private:
  variant<T, E> m_v;
};

template <typename E>
class expected<void, E> {
public:
  expected() = default;
  template <typename G>
  expected(const unexpected<G>& u) : m_e(u.error()) {}
  template <typename G>
  expected(unexpected<G>&& u) : m_e(std::move(u).error()) {}
  bool has_value() const { return !m_e.has_value(); }
  explicit operator bool() const { return has_value(); }
  void operator*() const {}
  void value() const {}
  E& error() & { return *m_e; }
  const E& error() const& { return *m_e; }

private:
  optional<E> m_e;
};

} // namespace std
#define __cpp_lib_expected 202202L
#endif
