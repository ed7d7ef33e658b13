// The worker's Cap'n Proto server: accepts connections on the listening socket it inherited
// (or bound by hand), refuses any peer whose SO_PEERCRED uid is neither root nor the gateway's,
// and serves the Worker interface with bounded message sizes.
#pragma once

#include <kj/async-io.h>
#include <sys/types.h>

#include "service.h"

namespace pgod::worker {

// Accepts connections until the promise is dropped.
kj::Promise<void> serve_worker(kj::ConnectionReceiver& listener, Service& service, uid_t gateway_uid);

// SO_PEERCRED's uid of a unix-socket peer; nullopt when it cannot be told.
std::optional<uid_t> peer_uid(int fd);

}  // namespace pgod::worker
