// The docker gate's confinement, entered once its settings are read and before it reads a byte
// from a service's socket, in this order:
//
//   1. enter_private_root: a user, mount and network namespace of its own (no privilege needed, so it
//      works the same when pgod starts the gate and under systemd), whose root is an empty
//      tmpfs holding only dockerd's socket and, read-only, the service directories the gate
//      resolves bind sources in, at the paths they have on the host. The old root is detached.
//      The gate's threads and libraries are loaded already; it opens no file after this.
//   2. the capabilities the new user namespace gave are dropped (all sets emptied).
//   3. install_dockergate_filter: no_new_privs and a seccomp allowlist (default: kill the
//      process): no exec, no fork (threads only), no socket but AF_UNIX, no mount or namespace
//      call, files opened only with O_PATH (to resolve bind sources), never for reading.
//      Last, so that the steps above may use what it forbids.
#pragma once

#include <string>
#include <vector>

#include "expected.h"

namespace pgod::dockergate {

// `docker_socket` and `roots` are absolute paths as the host sees them; each is resolved
// (realpath) first, and mounted at its resolved path. Returns the resolved docker socket path,
// which is where the gate connects from then on. A root that does not exist is skipped.
Expected<std::string, std::string> enter_private_root(const std::string& docker_socket,
                                                      const std::vector<std::string>& roots);

// Empties every capability set (the ones a new user namespace grants).
Expected<Done, std::string> drop_capabilities();

// no_new_privs, then the allowlist on every thread (TSYNC).
Expected<Done, std::string> install_dockergate_filter();

}  // namespace pgod::dockergate
