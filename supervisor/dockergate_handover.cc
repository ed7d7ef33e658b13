#include "dockergate_handover.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>

#include "fd_passing.h"
#include "system_call.h"

namespace pgod::supervisor {

DockerGateHandover::DockerGateHandover(kj::AsyncIoContext& io, int listener, uid_t gate_uid,
                                       std::function<GateOffer()> offer)
    : listener_(listener), gate_uid_(gate_uid), offer_(std::move(offer)) {
  const int flags = fcntl(listener_, F_GETFL);
  if (flags < 0 || fcntl(listener_, F_SETFL, flags | O_NONBLOCK) != 0)
    spdlog::error("the docker gate's hand-over socket: {}", os_error("fcntl(O_NONBLOCK)", "", errno));
  observer_ =
      kj::heap<kj::UnixEventPort::FdObserver>(io.unixEventPort, listener_, kj::UnixEventPort::FdObserver::OBSERVE_READ);
  loop_ = accept_loop().eagerlyEvaluate(
      [](kj::Exception&& e) { spdlog::error("the docker gate's hand-over failed: {}", e.getDescription().cStr()); });
}

kj::Promise<void> DockerGateHandover::accept_loop() {
  return observer_->whenBecomesReadable().then([this]() {
    while (true) {
      UniqueFd connection(accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC));
      if (!connection) break;  // EAGAIN: all taken
      serve(std::move(connection));
    }
    return accept_loop();
  });
}

void DockerGateHandover::serve(UniqueFd connection) {
  ucred peer{};
  socklen_t size = sizeof peer;
  if (getsockopt(connection.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 ||
      (peer.uid != gate_uid_ && peer.uid != 0)) {
    spdlog::warn("the docker gate's hand-over: refused a connection from uid {} (pid {})", peer.uid, peer.pid);
    return;
  }
  // The gate reads at once; a gate that does not cannot hold pgod up for long.
  timeval timeout{5, 0};
  setsockopt(connection.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  const GateOffer offer = offer_();
  if (auto sent = send_with_fds(connection.get(), offer.settings, offer.fds); !sent) {
    spdlog::error("the docker gate's hand-over: {}", sent.error());
    return;
  }
  spdlog::info("[pgod-dockergate] handed {} service socket(s) to the docker gate (pid {})", offer.fds.size(), peer.pid);
  current_ = std::move(connection);  // the previous gate's connection closes: it has an old set
}

}  // namespace pgod::supervisor
