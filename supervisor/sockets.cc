#include "sockets.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fd_passing.h"
#include "system_call.h"

namespace pgod::supervisor {
// pgod binds the worker sockets (not the workers) so their owner, group and mode are root's
// decision, and they survive worker restarts: a connection made while a worker restarts waits
// in the backlog.
Expected<UniqueFd, std::string> bind_unix_socket(const std::string& path, gid_t group) {
  return bind_unix_socket(path, 0, group, 0660);
}

Expected<UniqueFd, std::string> bind_unix_socket(const std::string& path, uid_t owner, gid_t group, mode_t mode) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return Unexpected{fmt::format("socket path too long: {}", path)};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Unexpected{os_error("socket for", path, errno)};
  // None of pgod's sockets is for sending descriptors to their owner (the docker gate's
  // hand-over sends them the other way): where the kernel can, a peer that tries gets EPERM.
  if (!refuse_descriptors(fd.get()) && errno != ENOPROTOOPT)
    return Unexpected{os_error("setsockopt SO_PASSRIGHTS on", path, errno)};
  struct stat info {};
  if (lstat(path.c_str(), &info) == 0) {
    // Only ever replace a socket (left by an earlier run); anything else is not ours.
    if (!S_ISSOCK(info.st_mode)) return Unexpected{fmt::format("{} exists and is not a socket: remove it", path)};
    if (unlink(path.c_str()) != 0) return Unexpected{os_error("unlink", path, errno)};
  }
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return Unexpected{os_error("bind", path, errno)};
  if (chown(path.c_str(), owner, group) != 0) return Unexpected{os_error("chown", path, errno)};
  if (chmod(path.c_str(), mode) != 0) return Unexpected{os_error("chmod", path, errno)};
  if (listen(fd.get(), 64) != 0) return Unexpected{os_error("listen on", path, errno)};
  return fd;
}

}  // namespace pgod::supervisor
