// The listening sockets pgod creates as root and hands to its children: one unix socket per
// worker (and its own supervisor.sock), and the gateway's TCP listeners, so a port below 1024
// needs no privilege in the gateway.
#pragma once

#include <sys/types.h>

#include <string>

#include "expected.h"
#include "listen_address.h"
#include "unique_fd.h"

namespace pgod::supervisor {

// Binds and listens on `path`, owned by root:group, mode 0660. A socket left by an earlier run
// is replaced; anything else at `path` is an error.
Expected<UniqueFd, std::string> bind_unix_socket(const std::string& path, gid_t group);

// Binds and listens on a TCP address; an empty host means every address (IPv6 and IPv4 when
// the host has IPv6). `flag` names the address's origin in errors ("-s/--ssh").
Expected<UniqueFd, std::string> bind_tcp(const ListenAddress& address, const std::string& flag);

}  // namespace pgod::supervisor
