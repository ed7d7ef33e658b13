#include "backends.h"

#include <capnp/message.h>
#include <spdlog/spdlog.h>

#include "logging.h"
#include "rpc_listener.h"
#include "rpc_verbs.h"

namespace pgod::gateway {
namespace {

// A worker that does not answer `status` within this is reported as not answering.
constexpr auto kStatusTimeout = 2 * kj::SECONDS;
// After a key watch fails (worker restarting), wait this long before asking again.
constexpr auto kKeyRetryDelay = 1 * kj::SECONDS;
// Relay threads per service at once: its link's, and one of an earlier link still ending.
constexpr std::size_t kRelaysPerService = 2;

const char* state_word(rpc::ServiceState state) {
  switch (state) {
    case rpc::ServiceState::OK:
      return "ok";
    case rpc::ServiceState::FROZEN:
      return "frozen";
    case rpc::ServiceState::ROLLBACK:
      return "rollback";
    case rpc::ServiceState::BROKEN:
      return "broken";
    case rpc::ServiceState::DIFF:
      return "diff";
    case rpc::ServiceState::STOPPED:
      return "stopped";
    case rpc::ServiceState::STARTING:
      return "starting";
    case rpc::ServiceState::REVERTED:
      return "reverted";
  }
  return "unknown";
}

}  // namespace

// One Cap'n Proto connection to a unix socket. `bootstrap` can be used at once: calls made
// while connecting wait for the connection. `broken` turns true when it fails or ends.
struct Backends::Link {
  // Workers' links only. Before the stream: it outlives it, since its relay closes the
  // stream's descriptor once it is gone.
  std::shared_ptr<WorkerLink> relay;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  capnp::Capability::Client bootstrap = nullptr;
  kj::Promise<void> lifetime = nullptr;
  bool broken = false;
};

struct Backends::WorkerEntry {
  std::string name;
  kj::Own<Link> link;
  rpc::ServiceInfo::WorkerState worker_state = rpc::ServiceInfo::WorkerState::STOPPED;
  std::uint64_t key_generation = 0;
  kj::Promise<void> key_watch = nullptr;
};

Backends::Backends(kj::AsyncIoContext& io, std::string rundir, KeyIndex& keys)
    : io_(io), rundir_(std::move(rundir)), keys_(keys) {}

Backends::~Backends() = default;

capnp::Capability::Client Backends::start_rpc(Link& link, kj::Own<kj::AsyncIoStream> stream) {
  link.stream = kj::mv(stream);
  link.network = rpc_network(*link.stream, capnp::rpc::twoparty::Side::CLIENT, 0);
  link.rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*link.network));
  capnp::MallocMessageBuilder message(8);
  auto vat = message.initRoot<capnp::rpc::twoparty::VatId>();
  vat.setSide(capnp::rpc::twoparty::Side::SERVER);
  return link.rpc->bootstrap(vat);
}

kj::Own<Backends::Link> Backends::connect_supervisor(const std::string& path) {
  auto link = kj::heap<Link>();
  Link& l = *link;
  auto connected = io_.provider->getNetwork()
                       .parseAddress(kj::str("unix:", path.c_str()))
                       .then([](kj::Own<kj::NetworkAddress> address) { return address->connect(); })
                       .then([this, &l](kj::Own<kj::AsyncIoStream> stream) -> capnp::Capability::Client {
                         return start_rpc(l, kj::mv(stream));
                       })
                       .fork();
  l.bootstrap = connected.addBranch();
  l.lifetime = connected.addBranch()
                   .then([&l](capnp::Capability::Client) { return l.network->onDisconnect(); })
                   .then([&l]() { l.broken = true; }, [&l](kj::Exception&&) { l.broken = true; })
                   .eagerlyEvaluate(nullptr);
  return link;
}

kj::Own<Backends::Link> Backends::connect_worker(const std::string& path) {
  auto link = kj::heap<Link>();
  Link& l = *link;
  int loop_end = -1;
  l.relay = WorkerLink::open(path, loop_end);
  if (!l.relay) {
    l.bootstrap = KJ_EXCEPTION(DISCONNECTED, "no thread or socket pair for the worker's link");
    l.broken = true;
    return link;
  }
  // Connected at once; the relay connects to the worker, and ends the pair if it cannot. Not
  // the stream's to close: the relay closes it (see worker_link.h).
  l.bootstrap =
      start_rpc(l, io_.lowLevelProvider->wrapSocketFd(loop_end, kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC));
  l.rpc->setFlowLimit(kWorkerCallBytes / sizeof(capnp::word));
  l.lifetime = l.network->onDisconnect()
                   .then([&l]() { l.broken = true; }, [&l](kj::Exception&&) { l.broken = true; })
                   .eagerlyEvaluate(nullptr);
  return link;
}

Backends::Link& Backends::supervisor_link() {
  if (!supervisor_ || supervisor_->broken) supervisor_ = connect_supervisor(rundir_ + "/supervisor.sock");
  return *supervisor_;
}

Backends::Link& Backends::worker_link(WorkerEntry& entry) {
  if (entry.link && !entry.link->broken) return *entry.link;
  entry.link = nullptr;  // lets its relay end
  auto& relays = relays_[entry.name];
  std::erase_if(relays, [](const std::weak_ptr<const void>& relay) { return relay.expired(); });
  if (relays.size() >= kRelaysPerService) {
    // A worker that leaves a relay stuck on each link it breaks makes no more threads.
    entry.link = kj::heap<Link>();
    entry.link->bootstrap = KJ_EXCEPTION(DISCONNECTED, "the worker's earlier links have not ended yet");
    entry.link->broken = true;
    return *entry.link;
  }
  entry.link = connect_worker(rundir_ + "/workers/" + entry.name + ".sock");
  if (entry.link->relay) relays.push_back(entry.link->relay->relay_running());
  if (relays.empty()) relays_.erase(entry.name);
  return *entry.link;
}

rpc::Supervisor::Client Backends::supervisor() { return supervisor_link().bootstrap.castAs<rpc::Supervisor>(); }

bool Backends::has_service(const std::string& name) const { return workers_.count(name) > 0; }

std::optional<rpc::ServiceInfo::WorkerState> Backends::worker_state(const std::string& name) const {
  auto found = workers_.find(name);
  if (found == workers_.end()) return std::nullopt;
  return found->second->worker_state;
}

rpc::Worker::Client Backends::worker(const std::string& name) {
  auto found = workers_.find(name);
  KJ_REQUIRE(found != workers_.end(), "no such service");
  return worker_link(*found->second).bootstrap.castAs<rpc::Worker>();
}

std::shared_ptr<WorkerLink> Backends::worker_relay(const std::string& name) {
  auto found = workers_.find(name);
  if (found == workers_.end() || !found->second->link) return nullptr;
  return found->second->link->relay;
}

kj::Promise<void> Backends::watch_keys(WorkerEntry& entry) {
  auto request = worker(entry.name).authorizedKeysRequest();
  request.setAfter(entry.key_generation);
  return request.send()
      .then([this, &entry](capnp::Response<rpc::Worker::AuthorizedKeysResults> response) {
        std::vector<ListedKey> listed;
        for (auto key : response.getKeys())
          listed.push_back({key.getType(), key.getBase64(), key.getComment(), key.getFile()});
        const auto unusable = keys_.set_service_keys(entry.name, listed);
        entry.key_generation = response.getGeneration();
        auto log = service_logger(entry.name);
        log->info("{} key(s) accepted for this service{}", listed.size() - unusable,
                  unusable ? fmt::format(" ({} not usable)", unusable) : std::string());
      })
      .catch_([this, &entry](kj::Exception&& e) {
        // The worker is restarting or gone: keep the last keys (its checkout is unchanged) and
        // ask again shortly.
        spdlog::debug("[{}] key watch: {}", entry.name, e.getDescription().cStr());
        return io_.provider->getTimer().afterDelay(kKeyRetryDelay);
      })
      .then([this, &entry]() { return watch_keys(entry); });
}

void Backends::apply_list(capnp::List<rpc::ServiceInfo>::Reader services) {
  std::set<std::string, std::less<>> seen;
  for (auto info : services) {
    std::string name = info.getName();
    seen.insert(name);
    if (auto known = workers_.find(name); known != workers_.end()) {
      known->second->worker_state = info.getWorkerState();
      continue;
    }
    auto entry = std::make_unique<WorkerEntry>();
    entry->name = name;
    entry->worker_state = info.getWorkerState();
    auto& ref = *entry;
    workers_.emplace(name, std::move(entry));
    ref.key_watch = watch_keys(ref).eagerlyEvaluate(nullptr);
    spdlog::info("service {} added", name);
  }
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (seen.count(it->first)) {
      ++it;
      continue;
    }
    spdlog::info("service {} removed", it->first);
    keys_.remove_service(it->first);
    it = workers_.erase(it);
  }
}

kj::Promise<void> Backends::refresh_soon() {
  const auto now = io_.provider->getTimer().now();
  KJ_IF_MAYBE (last, last_refresh_) {
    if (now - *last < 1 * kj::SECONDS) return kj::READY_NOW;
  }
  return refresh();
}

kj::Promise<void> Backends::refresh() {
  last_refresh_ = io_.provider->getTimer().now();
  return supervisor()
      .listServicesRequest()
      .send()
      .then([this](capnp::Response<rpc::Supervisor::ListServicesResults> response) {
        if (supervisor_unreachable_logged_) spdlog::info("the supervisor answers again");
        supervisor_unreachable_logged_ = false;
        apply_list(response.getServices());
      })
      .catch_([this](kj::Exception&& e) {
        // Without the supervisor the last known list stays: the workers may still be there.
        if (!supervisor_unreachable_logged_)
          spdlog::warn("cannot list the services ({}/supervisor.sock): {}", rundir_, e.getDescription().cStr());
        supervisor_unreachable_logged_ = true;
      });
}

kj::Promise<void> Backends::run(kj::Duration interval) {
  return refresh().then([this, interval]() {
    return io_.provider->getTimer().afterDelay(interval).then([this, interval]() { return run(interval); });
  });
}

kj::Promise<std::vector<ServiceSnapshot>> Backends::snapshot() {
  return supervisor().listServicesRequest().send().then(
      [this](capnp::Response<rpc::Supervisor::ListServicesResults> response) {
        auto snapshots = kj::heap<std::vector<ServiceSnapshot>>();
        kj::Vector<kj::Promise<void>> asks;
        for (auto info : response.getServices()) {
          ServiceSnapshot snap;
          snap.name = info.getName();
          snap.worker_state = worker_state_name(info.getWorkerState());
          snap.worker_restarts = info.getRestarts();
          snapshots->push_back(std::move(snap));
        }
        for (std::size_t i = 0; i < snapshots->size(); ++i) {
          auto& snap = (*snapshots)[i];
          if (!has_service(snap.name)) continue;
          auto ask = worker(snap.name).statusRequest().send().then(
              [&snap](capnp::Response<rpc::Worker::StatusResults> status) {
                snap.worker_answered = true;
                snap.state = state_word(status.getStatus().getState());
                snap.hash = status.getStatus().getHash();
              });
          asks.add(io_.provider->getTimer()
                       .timeoutAfter(kStatusTimeout, kj::mv(ask))
                       .catch_([](kj::Exception&&) { /* reported as not answering */ }));
        }
        return kj::joinPromises(asks.releaseAsArray()).then([snapshots = kj::mv(snapshots)]() mutable {
          return std::move(*snapshots);
        });
      });
}

}  // namespace pgod::gateway
