#include "sockets.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

}  // namespace pgod::supervisor
