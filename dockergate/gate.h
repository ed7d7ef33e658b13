// One connection on a service's docker socket: read one request, find its row in the dispatch
// table, judge it, re-emit what was judged to dockerd, and relay the reply (and, for attach and
// exec, the raw stream both ways) until either side goes. A client that goes away ends the call
// on dockerd at once (a followed log, an attach), so nothing keeps running behind it.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "gate_service.h"
#include "unique_fd.h"

namespace spdlog {
class logger;
}

namespace pgod::dockergate {

struct GateLimits {
  unsigned max_connections_per_service = 64;  // each is one thread; more get 503 at once
  int head_timeout_seconds = 30;              // for the request's head and a judged body
};

// What serve_connection needs about the service, shared by its connections.
struct ServedService {
  GateService service;
  std::shared_ptr<spdlog::logger> log;
  std::atomic<unsigned> connections{0};
};

// Serves one accepted connection to its end. Runs on the connection's own thread.
void serve_connection(const std::string& docker_socket, ServedService& served, UniqueFd client,
                      const GateLimits& limits);

// Accepts on `listener` and starts a thread per connection (within the limit); returns when
// accept fails with anything but EINTR/ECONNABORTED/EAGAIN.
void accept_one(const std::string& docker_socket, ServedService& served, int listener, const GateLimits& limits);

}  // namespace pgod::dockergate
