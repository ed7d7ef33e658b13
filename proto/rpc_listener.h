// Serving a Cap'n Proto interface on a unix socket, the way every pgod socket does it: each
// connection's SO_PEERCRED uid is checked on accept (root and one other uid only), and message
// sizes are bounded so a hostile peer cannot make the server allocate without limit.
#pragma once

#include <capnp/capability.h>
#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <sys/types.h>

#include <optional>
#include <string>

namespace pgod {

// Generous for real requests (a command line is at most kilobytes), small enough that a
// malformed or hostile message cannot make the server allocate without bound.
capnp::ReaderOptions rpc_reader_options();

// A Cap'n Proto network on `stream` for a less trusted peer: its messages bounded by
// rpc_reader_options(), and with `max_fds` > 0 (over kj's unix socket stream) up to that many
// descriptors a message (a worker hands the gateway a command's stdout pipe that way).
kj::Own<capnp::TwoPartyVatNetwork> rpc_network(kj::AsyncIoStream& stream, capnp::rpc::twoparty::Side side,
                                               unsigned max_fds);

// SO_PEERCRED's uid of a unix-socket peer; nullopt when it cannot be told.
std::optional<uid_t> peer_uid(int fd);

// Accepts connections until the promise is dropped; each one gets `bootstrap`. `what` names the
// socket in log lines ("worker socket", "supervisor socket"). `max_fds` > 0 lets capabilities
// carry file descriptors both ways (Cap'n Proto sends none on a link that accepts none), at most
// that many in one message from the peer; those nothing asks for are closed unread.
kj::Promise<void> serve_unix_rpc(kj::ConnectionReceiver& listener, capnp::Capability::Client bootstrap,
                                 uid_t allowed_uid, std::string what, unsigned max_fds = 0);

}  // namespace pgod
