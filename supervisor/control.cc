#include "control.h"

#include <capnp/rpc-twoparty.h>
#include <fmt/format.h>
#include <kj/async-io.h>

#include <cstdio>

#include "rpc_verbs.h"
#include "supervisor.capnp.h"

namespace pgod::supervisor {
namespace {

rpc::ServiceInfo::WorkerState to_rpc(WorkerView::State state) {
  switch (state) {
    case WorkerView::State::kRunning:
      return rpc::ServiceInfo::WorkerState::RUNNING;
    case WorkerView::State::kBackingOff:
      return rpc::ServiceInfo::WorkerState::BACKING_OFF;
    case WorkerView::State::kStopped:
      return rpc::ServiceInfo::WorkerState::STOPPED;
  }
  return rpc::ServiceInfo::WorkerState::STOPPED;
}

class ControlService final : public rpc::Supervisor::Server {
 public:
  explicit ControlService(Supervisor& supervisor) : supervisor_(supervisor) {}

  kj::Promise<void> listServices(ListServicesContext context) override {
    const auto views = supervisor_.workers();
    auto list = context.getResults().initServices(static_cast<unsigned>(views.size()));
    for (unsigned i = 0; i < views.size(); ++i) {
      list[i].setName(views[i].name);
      list[i].setWorkerState(to_rpc(views[i].state));
      list[i].setWorkerPid(views[i].pid);
      list[i].setRestarts(views[i].restarts);
      list[i].setLastExit(views[i].last_exit);
      list[i].setMountError(views[i].mount_error);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> restartWorker(RestartWorkerContext context) override {
    const std::string name = context.getParams().getName().cStr();
    if (!supervisor_.restart_worker(name))
      return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                           kj::str("no service \"", name.c_str(), "\" (or it is being removed)"));
    return kj::READY_NOW;
  }

  // Only the gateway (and root) can reach this socket; the secret goes to the gateway, which
  // compares a delivery's signature against it and forgets it.
  kj::Promise<void> hookSettings(HookSettingsContext context) override {
    const auto hook = supervisor_.hook_settings(context.getParams().getName().cStr());
    if (!hook) return kj::READY_NOW;  // empty: no hooks for this service
    auto results = context.getResults();
    const auto& secret = hook->secret.reveal();
    results.setSecret(kj::arrayPtr(reinterpret_cast<const kj::byte*>(secret.data()), secret.size()));
    results.setBranch(hook->branch);
    return kj::READY_NOW;
  }

 private:
  Supervisor& supervisor_;
};

template <class Call>
int with_supervisor(const std::string& socket_path, Call call) {
  auto io = kj::setupAsyncIo();
  int code = 1;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 auto address =
                     io.provider->getNetwork().parseAddress(kj::str("unix:", socket_path.c_str())).wait(io.waitScope);
                 auto stream = address->connect().wait(io.waitScope);
                 capnp::TwoPartyClient client(*stream);
                 code = call(client.bootstrap().castAs<rpc::Supervisor>(), io.waitScope);
               })) {
    // A refusal from pgod arrives as "remote exception: …": the prefix says nothing to an operator.
    std::string_view text = exception->getDescription().cStr();
    if (text.starts_with("remote exception: ")) text.remove_prefix(std::string_view("remote exception: ").size());
    fmt::print(stderr, "pgod: {}: {}\n", socket_path, text);
    return 1;
  }
  return code;
}

}  // namespace

capnp::Capability::Client make_control_service(Supervisor& supervisor) { return kj::heap<ControlService>(supervisor); }

int print_status(const std::string& socket_path) {
  return with_supervisor(socket_path, [](rpc::Supervisor::Client client, kj::WaitScope& wait) {
    auto response = client.listServicesRequest().send().wait(wait);
    fmt::print("{:<24} {:<12} {:>8} {:>8}  {}\n", "SERVICE", "WORKER", "PID", "RESTARTS", "LAST EXIT / MOUNT");
    for (auto info : response.getServices()) {
      std::string note = info.getLastExit().cStr();
      if (info.getMountError().size() > 0)
        note += (note.empty() ? "" : "; ") + std::string(info.getMountError().cStr());
      fmt::print("{:<24} {:<12} {:>8} {:>8}  {}\n", info.getName().cStr(), worker_state_name(info.getWorkerState()),
                 info.getWorkerPid(), info.getRestarts(), note);
    }
    return 0;
  });
}

int request_worker_restart(const std::string& socket_path, const std::string& name) {
  return with_supervisor(socket_path, [&name](rpc::Supervisor::Client client, kj::WaitScope& wait) {
    auto request = client.restartWorkerRequest();
    request.setName(name);
    request.send().wait(wait);
    fmt::print("pgod: restarting the worker of {}\n", name);
    return 0;
  });
}

}  // namespace pgod::supervisor
