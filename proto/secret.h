// Secrets (registry tokens, env values, credentials in repository URLs) must never reach a log
// line or an error message. Holding them in Secret makes that a property of the type: fmt (and
// therefore spdlog) and iostreams print a placeholder, and the value is only reachable through
// an explicit reveal() at the one place that hands it to its consumer.
#pragma once

#include <fmt/format.h>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace pgod {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}

  const std::string& reveal() const { return value_; }
  bool empty() const { return value_.empty(); }
  bool operator==(const Secret&) const = default;

  static constexpr std::string_view placeholder = "[redacted]";

 private:
  std::string value_;
};

inline std::ostream& operator<<(std::ostream& out, const Secret&) { return out << Secret::placeholder; }

// Replaces credentials in a URL's userinfo, for logging a repository: for http(s) the whole
// userinfo goes (a bare token is often sent as the user name), for other schemes only the
// password. Text that is not a URL with userinfo is returned unchanged.
std::string redact_url(std::string_view url);

// Replaces every occurrence of each secret's value in text (for messages produced by libraries
// or child processes that may echo a credential back).
std::string redact(std::string_view text, const std::vector<Secret>& secrets);

}  // namespace pgod

template <>
struct fmt::formatter<pgod::Secret> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const pgod::Secret&, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(pgod::Secret::placeholder, ctx);
  }
};
