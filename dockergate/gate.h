// One connection on a service's docker socket: read one request, find its row in the dispatch
// table, judge it, re-emit what was judged to dockerd, and relay the reply (and, for attach and
// exec, the raw stream both ways) until either side goes. A client that goes away ends the call
// on dockerd at once (a followed log, an attach), so nothing keeps running behind it.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <span>
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

// Once a reply has passed 256 KiB, a piece of it shorter than this waits for more (relay in
// gate.cc says why): gather_more adds to buffer[0, got) what `daemon` brings within two pauses
// of 0.5 ms, until the piece is this long or the buffer full, and returns the new length. An end
// or an error is left for the caller's next recv to see.
inline constexpr std::size_t kGatherEnough = std::size_t{32} << 10;
std::size_t gather_more(int daemon, std::span<char> buffer, std::size_t got);

// Accepts on `listener` and starts a thread per connection (within the limit); returns when
// accept fails with anything but EINTR/ECONNABORTED/EAGAIN.
void accept_one(const std::string& docker_socket, ServedService& served, int listener, const GateLimits& limits);

}  // namespace pgod::dockergate
