#include "secret.h"

namespace pgod {

std::string redact_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const auto authority_begin = scheme_end + 3;
  const auto authority_end = url.find_first_of("/?#", authority_begin);
  const auto authority =
      url.substr(authority_begin,
                 authority_end == std::string_view::npos ? std::string_view::npos : authority_end - authority_begin);
  const auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);

  const auto scheme = url.substr(0, scheme_end);
  const auto userinfo = authority.substr(0, at);
  std::string replacement;
  if (scheme == "http" || scheme == "https") {
    replacement = std::string(Secret::placeholder);
  } else {
    const auto colon = userinfo.find(':');
    replacement = colon == std::string_view::npos
                      ? std::string(userinfo)
                      : std::string(userinfo.substr(0, colon)) + ":" + std::string(Secret::placeholder);
  }
  std::string out(url.substr(0, authority_begin));
  out += replacement;
  out += url.substr(authority_begin + at);
  return out;
}

std::string redact(std::string_view text, const std::vector<Secret>& secrets) {
  std::string out(text);
  for (const auto& secret : secrets) {
    const auto& value = secret.reveal();
    if (value.empty()) continue;
    for (auto pos = out.find(value); pos != std::string::npos;
         pos = out.find(value, pos + Secret::placeholder.size())) {
      out.replace(pos, value.size(), Secret::placeholder);
    }
  }
  return out;
}

}  // namespace pgod
