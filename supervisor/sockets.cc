#include "sockets.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace pgod::supervisor {
namespace {

std::string errno_text(std::string_view what, const std::string& where) {
  return fmt::format("{} {}: {}", what, where, std::strerror(errno));
}

}  // namespace

// pgod binds the worker sockets (not the workers) so their owner, group and mode are root's
// decision, and they survive worker restarts: a connection made while a worker restarts waits
// in the backlog.
Expected<UniqueFd, std::string> bind_unix_socket(const std::string& path, gid_t group) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return Unexpected{fmt::format("socket path too long: {}", path)};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Unexpected{errno_text("socket for", path)};
  struct stat info {};
  if (lstat(path.c_str(), &info) == 0) {
    // Only ever replace a socket (left by an earlier run); anything else is not ours.
    if (!S_ISSOCK(info.st_mode)) return Unexpected{fmt::format("{} exists and is not a socket: remove it", path)};
    if (unlink(path.c_str()) != 0) return Unexpected{errno_text("unlink", path)};
  }
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return Unexpected{errno_text("bind", path)};
  if (chown(path.c_str(), 0, group) != 0) return Unexpected{errno_text("chown", path)};
  if (chmod(path.c_str(), 0660) != 0) return Unexpected{errno_text("chmod", path)};
  if (listen(fd.get(), 64) != 0) return Unexpected{errno_text("listen on", path)};
  return fd;
}

Expected<UniqueFd, std::string> bind_tcp(const ListenAddress& address, const std::string& flag) {
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
      return Unexpected{errno_text("socket for", where)};
    }
    const int yes = 1, no = 0;
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) != 0)
      return Unexpected{errno_text("SO_REUSEADDR on", where)};
    if (found->ai_family == AF_INET6 && address.host.empty() &&
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof no) != 0)
      return Unexpected{errno_text("IPV6_V6ONLY on", where)};
    if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) return Unexpected{errno_text("bind", where)};
    if (listen(fd.get(), 128) != 0) return Unexpected{errno_text("listen on", where)};
    return fd;
  }
  return Unexpected{fmt::format("{}: no address to bind", where)};
}

}  // namespace pgod::supervisor
