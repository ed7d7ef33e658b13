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

}  // namespace pgod::worker
