// The supervisor's RPC surface on <rundir>/supervisor.sock (proto/supervisor.capnp): the
// service list and "restart this worker". The server side runs in pgod; the client side is
// `pgod --status` and `pgod --restart-worker NAME` for root on the host.
#pragma once

#include <capnp/capability.h>

#include <string>

#include "supervisor.h"

namespace pgod::supervisor {

capnp::Capability::Client make_control_service(Supervisor& supervisor);

// Client commands; they print what they got and return the process exit code.
int print_status(const std::string& socket_path);
int request_worker_restart(const std::string& socket_path, const std::string& name);

}  // namespace pgod::supervisor
