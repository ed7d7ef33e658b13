// The docker gate as its own systemd unit: pgod still binds every service's docker socket, and
// hands them, with the gate's settings, to the gate that connects to <rundir>/dockergate.sock
// (SCM_RIGHTS, proto/fd_passing.h). Only the gate's uid (or root) is served. When the set of
// services changes, pgod closes the gate's connection: the gate exits, systemd starts it again
// (Restart=always) and it comes back for the new set. A restart of pgod closes it the same way.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "unique_fd.h"

namespace pgod::supervisor {

struct GateOffer {
  std::string settings;  // a DockerGateSettings message, serialised
  std::vector<int> fds;  // the services' sockets, in the order of the message's socketFd indexes
};

class DockerGateHandover {
 public:
  // `listener`: a listening unix socket (made non-blocking here); the caller keeps it open.
  DockerGateHandover(kj::AsyncIoContext& io, int listener, uid_t gate_uid, std::function<GateOffer()> offer);
  // Drops the connection of the gate that has the current set: it restarts and asks again.
  void renew() { current_ = UniqueFd(); }

 private:
  kj::Promise<void> accept_loop();
  void serve(UniqueFd connection);

  int listener_;
  uid_t gate_uid_;
  std::function<GateOffer()> offer_;
  UniqueFd current_;
  kj::Own<kj::UnixEventPort::FdObserver> observer_;
  kj::Promise<void> loop_ = nullptr;
};

}  // namespace pgod::supervisor
