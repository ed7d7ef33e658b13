#include "listen_address.h"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "system_call.h"

namespace pgod {

Expected<ListenAddress, std::string> parse_listen_address(std::string_view text) {
  const auto invalid = [&](std::string_view why) {
    return Unexpected{
        fmt::format("invalid address \"{}\": {} (expected [host]:port, e.g. :2222 or 127.0.0.1:2222)", text, why)};
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
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return invalid("bad port");
  const int number = std::stoi(std::string(port));
  if (number < 1 || number > 65535) return invalid("port out of range");
  return ListenAddress{std::string(host), static_cast<std::uint16_t>(number)};
}

Expected<UniqueFd, std::string> bind_listen_address(const ListenAddress& address, const std::string& flag) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (address.host.empty()) hints.ai_family = AF_INET6;  // "::" with dual stack, else 0.0.0.0 below
  const std::string port = std::to_string(address.port);
  const std::string where = fmt::format("{} [{}]:{}", flag, address.host, port);
  for (int attempt = 0; attempt < 2; ++attempt) {
    addrinfo* found = nullptr;
    const int error = getaddrinfo(address.host.empty() ? nullptr : address.host.c_str(), port.c_str(), &hints, &found);
    if (error != 0) {
      if (address.host.empty() && attempt == 0) {
        hints.ai_family = AF_INET;
        continue;
      }
      return Unexpected{fmt::format("{}: {}", where, gai_strerror(error))};
    }
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> results(found, freeaddrinfo);
    UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
      if (address.host.empty() && attempt == 0 && errno == EAFNOSUPPORT) {
        hints.ai_family = AF_INET;  // a host without IPv6
        continue;
      }
      return Unexpected{os_error("socket for", where, errno)};
    }
    const int yes = 1, no = 0;
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) != 0)
      return Unexpected{os_error("SO_REUSEADDR on", where, errno)};
    if (found->ai_family == AF_INET6 && address.host.empty() &&
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no) != 0)
      return Unexpected{os_error("IPV6_V6ONLY on", where, errno)};
    if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) return Unexpected{os_error("bind", where, errno)};
    // The kernel's largest backlog (net.core.somaxconn): under a flood of connections the
    // gateway refuses, a short queue drops legitimate clients' handshakes before the gateway
    // ever sees them, and they retry only after a second.
    if (listen(fd.get(), SOMAXCONN) != 0) return Unexpected{os_error("listen on", where, errno)};
    return fd;
  }
  return Unexpected{fmt::format("{}: no address to bind", where)};
}

}  // namespace pgod
