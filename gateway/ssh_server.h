// The gateway's SSH server: libssh sessions driven by the KJ event loop, one thread, every
// socket non-blocking, so one slow or stuck client never delays another. Keys are checked in
// two steps (listed by some service at auth, by the named service at exec), each exec request
// goes to its service's worker (ping is answered here, worker restart by the supervisor), and
// output streams back with flow control end to end.
#pragma once

#include <libssh/server.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <kj/async-io.h>

#include "backends.h"
#include "gateway_limits.h"
#include "key_index.h"
#include "metrics.h"

namespace pgod::gateway {

// Limits against abuse; each is a command-line flag (see pgod-gateway --help).
using Limits = GatewayLimits;

// "127.0.0.1:2222", "[::1]:2222": the socket's own address, or its peer's.
std::string socket_address(int fd, bool peer);

// The key exchanges the gateway offers, best first: curve25519-sha256, and the post-quantum
// hybrids where the installed libssh has them. Nothing slower (no finite-field Diffie-Hellman).
std::vector<std::string> key_exchanges();

class SshServer {
 public:
  // `bind` carries the host key; `listen_fd` is a listening TCP socket (not owned).
  SshServer(kj::AsyncIoContext& io, ssh_bind bind, int listen_fd, Backends& backends, const KeyIndex& keys,
            Metrics& metrics, Limits limits, std::string hostname);
  ~SshServer();
  SshServer(const SshServer&) = delete;
  SshServer& operator=(const SshServer&) = delete;

  // Accepts and serves until dropped.
  kj::Promise<void> run();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgod::gateway
