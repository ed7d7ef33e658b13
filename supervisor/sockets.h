// The listening sockets pgod creates as root and hands to its children: one unix socket per
// worker (and its own supervisor.sock). The gateway's TCP listeners come from
// bind_listen_address() (listen_address.h).
#pragma once

#include <sys/types.h>

#include <string>

#include "expected.h"
#include "unique_fd.h"

namespace pgod::supervisor {

// Binds and listens on `path`, owned by root:group, mode 0660. A socket left by an earlier run
// is replaced; anything else at `path` is an error.
Expected<UniqueFd, std::string> bind_unix_socket(const std::string& path, gid_t group);
// The same with an owner and a mode of the caller's choice (a service's docker socket: its
// user's, 0600).
Expected<UniqueFd, std::string> bind_unix_socket(const std::string& path, uid_t owner, gid_t group, mode_t mode);

}  // namespace pgod::supervisor
