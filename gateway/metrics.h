// The gateway's Prometheus endpoint: command counters kept here (as the original's
// pgo_command_count and pgo_command_error_count), and per-service gauges read from the
// supervisor and the workers at scrape time.
#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgod::gateway {

// What a scrape reports about one service.
struct ServiceSnapshot {
  std::string name;
  std::string worker_state;  // "running", "backing-off", "stopped" (from the supervisor)
  std::uint32_t worker_restarts = 0;
  bool worker_answered = false;  // the worker answered its status call in time
  std::string state;             // "ok", "frozen", "rollback", "broken", "diff", "stopped", "starting", "unknown"
  std::string hash;              // the commit the checkout is at
};

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One command that reached a known service: cmd is the verb's first word, subcmd its second
  // ("git pull" → "git", "pull"; "ps" → "ps", ""). error when its exit status was not 0.
  // At most 10,000 distinct label sets are kept; past that, new ones are not counted (logged once).
  void count_command(std::string_view service, std::string_view cmd, std::string_view subcmd, bool error);
  // A request refused before it reached a service; reason is one of a fixed set of words
  // ("auth", "bad_request", "not_found", "unauthorized", "not_acceptable", "limit"); any other
  // word counts as "other", so the series stay a fixed set.
  void count_rejected(std::string_view reason);
  // Connections open now (authenticated or not).
  void set_connections(std::int64_t open);
  // Logins pending now, and source addresses refused now for their penalty.
  void set_pending(std::int64_t pending, std::int64_t refused_sources);

  // The whole exposition, Prometheus text format 0.0.4.
  std::string render(const std::vector<ServiceSnapshot>& services) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Answers `GET /metrics` (200, text/plain; version=0.0.4; HEAD too) on every connection the
// listener accepts; any other path is 404, any other method 405. `snapshot` is called once per
// scrape; when it fails or takes over 10 s the answer is 500. Connections are bounded (16 open;
// more are closed at once) and timed (5 s to send a request, 20 s idle between requests, 10 s to
// take a response). Uses only the already-open listener: no sockets, threads or files of its own.
// listener, timer and metrics must outlive the returned promise; dropping it closes everything.
kj::Promise<void> serve_metrics(kj::ConnectionReceiver& listener, kj::Timer& timer, const Metrics& metrics,
                                std::function<kj::Promise<std::vector<ServiceSnapshot>>()> snapshot);

}  // namespace pgod::gateway
