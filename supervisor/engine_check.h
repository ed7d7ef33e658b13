// What `pgod --check` and `pgod --status` say about the docker engine: whether dockerd runs with
// user-namespace remapping. The docker gate judges a bind source before dockerd mounts it, and a
// process running as the service's user can swap a symlink in between; with userns-remap a
// container's root is an unprivileged host user, and that race gains nothing.
#pragma once

#include <string>

namespace pgod::supervisor {

// One line: "docker engine: …". Asks `docker info` on `docker_socket` (as root), within a few
// seconds; an engine that does not answer is said so, not an error.
std::string describe_docker_engine(const std::string& docker_socket);

}  // namespace pgod::supervisor
