// The gateway's view of the services behind it: the list from the supervisor (polled), one
// Cap'n Proto connection per worker (made when first needed, made again after the worker
// restarts), and each worker's key list (a long poll that keeps the KeyIndex current).
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "key_index.h"
#include "metrics.h"
#include "supervisor.capnp.h"
#include "worker.capnp.h"
#include "worker_link.h"

namespace pgod::gateway {

class Backends {
 public:
  // Bytes of a worker's calls (its commands' output) not answered yet, as they came over the
  // wire, past which the gateway stops reading that worker's link until some are. Cap'n Proto
  // queues calls to a streaming method that is still busy, with their messages, without bound:
  // a worker taken over could otherwise flood the gateway's memory with output, and every
  // service would lose it. A worker that keeps to its streams' windows (about 0.6 MiB each at
  // the default socket buffer, at most 24 streams) stays far below; past it, only that
  // worker's link waits. (It counts wire bytes, not what small calls cost: docs/SECURITY.md.)
  static constexpr std::size_t kWorkerCallBytes = std::size_t{32} << 20;

  Backends(kj::AsyncIoContext& io, std::string rundir, KeyIndex& keys);
  ~Backends();
  Backends(const Backends&) = delete;
  Backends& operator=(const Backends&) = delete;

  // Polls the supervisor's list every `interval` and keeps one key watch per service. Never
  // resolves; drop it to stop.
  kj::Promise<void> run(kj::Duration interval);
  // Asks the supervisor now.
  kj::Promise<void> refresh();
  // For a name not seen yet (a service added a moment ago): asks the supervisor unless it was
  // asked within the last second, so requests for made-up names cannot flood it.
  kj::Promise<void> refresh_soon();

  bool has_service(const std::string& name) const;
  // The service's worker as the supervisor last reported it (nullopt for an unknown service):
  // a call to a worker that is not running would wait until it is back.
  std::optional<rpc::ServiceInfo::WorkerState> worker_state(const std::string& name) const;
  // The worker of a known service. Calls wait while it connects; after a disconnect (worker
  // restarted) the next call connects again.
  rpc::Worker::Client worker(const std::string& name);
  // The relay of the link worker(name) last returned a client on: the descriptors the worker
  // sent on it (see worker_link.h). nullptr for an unknown service.
  std::shared_ptr<WorkerLink> worker_relay(const std::string& name);
  rpc::Supervisor::Client supervisor();

  // For /metrics: the supervisor's list and each worker's status (each bounded in time).
  kj::Promise<std::vector<ServiceSnapshot>> snapshot();

 private:
  struct Link;
  struct WorkerEntry;
  kj::Own<Link> connect_supervisor(const std::string& path);
  // Through a relay thread: the loop's end of the link never carries a descriptor.
  kj::Own<Link> connect_worker(const std::string& path);
  capnp::Capability::Client start_rpc(Link& link, kj::Own<kj::AsyncIoStream> stream);
  Link& supervisor_link();
  Link& worker_link(WorkerEntry& entry);
  kj::Promise<void> watch_keys(WorkerEntry& entry);
  void apply_list(capnp::List<rpc::ServiceInfo>::Reader services);

  kj::AsyncIoContext& io_;
  std::string rundir_;
  KeyIndex& keys_;
  kj::Own<Link> supervisor_;
  std::map<std::string, std::unique_ptr<WorkerEntry>, std::less<>> workers_;
  // The relays of each service's links, by name (kept when a service is removed: a relay stuck
  // on a descriptor the worker holds outlives its link, and its service may come back). No new
  // link is made while two of a service's relays still run.
  std::map<std::string, std::vector<std::weak_ptr<const void>>, std::less<>> relays_;
  bool supervisor_unreachable_logged_ = false;
  kj::Maybe<kj::TimePoint> last_refresh_;
};

}  // namespace pgod::gateway
