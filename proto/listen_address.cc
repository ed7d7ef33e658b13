#include "listen_address.h"

#include <fmt/format.h>

#include <algorithm>

namespace pgod {

Expected<ListenAddress, std::string> parse_listen_address(std::string_view text) {
  const auto invalid = [&](std::string_view why) {
    return Unexpected{fmt::format("invalid address \"{}\": {} (expected [host]:port, e.g. :2222 or 127.0.0.1:2222)",
                                  text, why)};
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return invalid("no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.starts_with('[')) {
    if (!host.ends_with(']') || host.size() < 3) return invalid("unbalanced [ ]");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return invalid("an IPv6 address needs [ ]");
  }
  if (!std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
               c == ':' || c == '%';
      }))
    return invalid("bad host");
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return invalid("bad port");
  const int number = std::stoi(std::string(port));
  if (number < 1 || number > 65535) return invalid("port out of range");
  return ListenAddress{std::string(host), static_cast<std::uint16_t>(number)};
}

}  // namespace pgod
