#include "rpc_listener.h"

#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

namespace pgod {

kj::Own<capnp::TwoPartyVatNetwork> rpc_network(kj::AsyncIoStream& stream, capnp::rpc::twoparty::Side side,
                                               unsigned max_fds) {
  if (max_fds > 0) {
    KJ_IF_MAYBE (unix_stream, kj::dynamicDowncastIfAvailable<kj::AsyncCapabilityStream>(stream)) {
      return kj::heap<capnp::TwoPartyVatNetwork>(*unix_stream, max_fds, side, rpc_reader_options());
    }
  }
  return kj::heap<capnp::TwoPartyVatNetwork>(stream, side, rpc_reader_options());
}

namespace {

// Far above what the gateway needs (one connection per running command).
constexpr std::size_t kMaxConnections = 256;

struct Connection {
  Connection(kj::Own<kj::AsyncIoStream> stream_in, capnp::Capability::Client bootstrap, unsigned max_fds)
      : stream(kj::mv(stream_in)),
        network(rpc_network(*stream, capnp::rpc::twoparty::Side::SERVER, max_fds)),
        rpc(capnp::makeRpcServer(*network, kj::mv(bootstrap))) {}
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class ConnectionErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& exception) override {
    spdlog::debug("connection ended: {}", exception.getDescription().cStr());
  }
};

struct Listener {
  Listener(kj::ConnectionReceiver& receiver_in, capnp::Capability::Client bootstrap_in, uid_t uid, std::string what_in,
           unsigned max_fds_in)
      : receiver(receiver_in),
        bootstrap(kj::mv(bootstrap_in)),
        allowed_uid(uid),
        what(std::move(what_in)),
        max_fds(max_fds_in) {}
  kj::ConnectionReceiver& receiver;
  capnp::Capability::Client bootstrap;
  uid_t allowed_uid;
  std::string what;
  unsigned max_fds;
  std::size_t open = 0;
  ConnectionErrors errors;
  kj::TaskSet connections{errors};
};

kj::Promise<void> accept_loop(Listener& listener) {
  return listener.receiver.accept().then([&listener](kj::Own<kj::AsyncIoStream> stream) {
    std::optional<uid_t> uid;
    KJ_IF_MAYBE (fd, stream->getFd()) {
      uid = peer_uid(*fd);
    }
    if (!uid || (*uid != 0 && *uid != listener.allowed_uid)) {
      spdlog::warn("{}: refused a connection from uid {} (only root and uid {} may connect)", listener.what,
                   uid ? std::to_string(*uid) : "unknown", listener.allowed_uid);
    } else if (listener.open >= kMaxConnections) {
      // Bounded, so that a misbehaving peer cannot exhaust this process's file descriptors.
      spdlog::warn("{}: refused a connection: {} are open already", listener.what, listener.open);
    } else {
      ++listener.open;
      auto connection = kj::heap<Connection>(kj::mv(stream), listener.bootstrap, listener.max_fds);
      auto ended = connection->network->onDisconnect().then([&listener]() { --listener.open; },
                                                            [&listener](kj::Exception&& e) {
                                                              --listener.open;
                                                              kj::throwFatalException(kj::mv(e));
                                                            });
      listener.connections.add(ended.attach(kj::mv(connection)));
    }
    return accept_loop(listener);
  });
}

}  // namespace

capnp::ReaderOptions rpc_reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 1 << 20;  // 8 MiB
  options.nestingLimit = 16;
  return options;
}

std::optional<uid_t> peer_uid(int fd) {
  struct ucred credentials {};
  socklen_t length = sizeof credentials;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0 || length != sizeof credentials)
    return std::nullopt;
  return credentials.uid;
}

kj::Promise<void> serve_unix_rpc(kj::ConnectionReceiver& listener, capnp::Capability::Client bootstrap,
                                 uid_t allowed_uid, std::string what, unsigned max_fds) {
  auto state = kj::heap<Listener>(listener, kj::mv(bootstrap), allowed_uid, std::move(what), max_fds);
  auto& ref = *state;
  return accept_loop(ref).attach(kj::mv(state));
}

}  // namespace pgod
