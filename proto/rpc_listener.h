// Serving a Cap'n Proto interface on a unix socket, the way every pgod socket does it: each
// connection's SO_PEERCRED uid is checked on accept (root and one other uid only), and message
// sizes are bounded so a hostile peer cannot make the server allocate without limit.
#pragma once

#include <capnp/capability.h>
#include <capnp/message.h>
#include <kj/async-io.h>
#include <sys/types.h>

#include <optional>
#include <string>

namespace pgod {

// Generous for real requests (a command line is at most kilobytes), small enough that a
// malformed or hostile message cannot make the server allocate without bound.
capnp::ReaderOptions rpc_reader_options();

// SO_PEERCRED's uid of a unix-socket peer; nullopt when it cannot be told.
std::optional<uid_t> peer_uid(int fd);

// Accepts connections until the promise is dropped; each one gets `bootstrap`. `what` names the
// socket in log lines ("worker socket", "supervisor socket").
kj::Promise<void> serve_unix_rpc(kj::ConnectionReceiver& listener, capnp::Capability::Client bootstrap,
                                 uid_t allowed_uid, std::string what);

}  // namespace pgod
