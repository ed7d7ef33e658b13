// A value or an error, for functions whose failure is ordinary input (bad config, bad command
// line) rather than a bug. C++23's std::expected is not in g++ 12's C++20 mode.
#pragma once

#include <utility>
#include <variant>

namespace pgod {

// What a function that succeeded with nothing to return returns: Expected<Done, std::string>.
struct Done {};

template <class E>
struct Unexpected {
  // A constructor rather than an aggregate: clang before 16 cannot do C++20's
  // parenthesised aggregate initialisation (Unexpected(error)).
  Unexpected(E e) : error(std::move(e)) {}  // NOLINT(google-explicit-constructor)
  E error;
};
template <class E>
Unexpected(E) -> Unexpected<E>;

template <class T, class E>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  template <class G>
  Expected(Unexpected<G> failure) : state_(std::in_place_index<1>, std::move(failure.error)) {}

  bool has_value() const { return state_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  E& error() & { return std::get<1>(state_); }
  const E& error() const& { return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

}  // namespace pgod
