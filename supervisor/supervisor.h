// The supervisor's life: prepare directories and sockets, remove stale services, keep one
// confined worker per service (and the gateway) running, restart what dies with backoff,
// apply a new config in place, and stop everything on request. It never parses network input,
// compose files or repositories: that is the workers' job.
#pragma once

#include <kj/async-io.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config.h"
#include "confine.h"
#include "dockergate_handover.h"
#include "layout.h"
#include "seccomp_filter.h"
#include "unique_fd.h"

namespace spdlog {
class logger;
}

namespace pgod::supervisor {

struct SupervisorSettings {
  Layout layout;
  WorkerDefaults defaults;
  std::string worker_program;
  std::string gateway_program;            // empty: no gateway child (--no-gateway)
  std::optional<Identity> gateway;        // the gateway's user; its group may use the worker sockets
  std::vector<std::string> gateway_args;  // after the fds: --rundir, --debug, …
  std::vector<int> gateway_fds;           // listening sockets handed to the gateway (owned by the caller)
  std::string gateway_host_key;           // read at each gateway start, passed on a sealed memfd
  std::string dockergate_program;         // empty: no docker gate child (--no-dockergate)
  std::optional<Identity> dockergate;     // the gate's user, with the docker group
  std::string docker_socket;              // dockerd's, opened only by the gate
  int dockergate_handover_fd = -1;        // --no-dockergate: where the gate unit takes its sockets
  // Called like mount(8) and umount(8) after these words: the program and any fixed options
  // (--mount-with-systemd: systemd-mount --collect, so that PID 1 mounts in the host's namespace).
  std::vector<std::string> mount_command;
  std::vector<std::string> umount_command;
  std::string path_prefix;      // tests: put before PATH in workers
  bool change_identity = true;  // false only under --no-root-check as non-root
};

// What the gateway checks a service's push hooks against (supervisor.capnp hookSettings).
struct HookSettings {
  Secret secret;
  std::string branch;
};

// What the RPC interface and the logs show about one worker.
struct WorkerView {
  std::string name;
  enum class State { kRunning, kBackingOff, kStopped } state = State::kStopped;
  pid_t pid = 0;
  unsigned restarts = 0;
  std::string last_exit;
  std::string mount_error;
};

class Supervisor final : private kj::TaskSet::ErrorHandler {
 public:
  Supervisor(kj::AsyncIoContext& io, SupervisorSettings settings, SeccompProgram worker_filter);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Prepares the directories, removes stale services and starts the workers and the gateway.
  // Fails (with a message) only when nothing can work: <dir> or <rundir> cannot be prepared.
  std::optional<std::string> start(config::Config config);

  // Applies a new, valid config: starts new services, stops and removes deleted ones, restarts
  // the workers whose settings changed; unchanged workers keep running.
  void apply(config::Config config);

  // Stops the gateway and every worker (TERM, then KILL after a grace period); containers keep
  // running.
  kj::Promise<void> shutdown();

  std::vector<WorkerView> workers() const;
  // Restarts one worker now; false when there is no such service.
  bool restart_worker(const std::string& name);
  // The service's hook secret and branch; nullopt when it has no hook_secret (or no service).
  std::optional<HookSettings> hook_settings(const std::string& name) const;
  // "N services, M workers running": for sd_notify STATUS and the log.
  std::string summary() const;

 private:
  struct Supervised;

  void taskFailed(kj::Exception&& exception) override;
  void stop_removed_services();
  void apply_service(const config::Service& service, const std::string& caddy);
  void restart_if_changed(Supervised& child, const config::Service& service, const Identity& identity,
                          kj::Array<capnp::word> settings, const std::shared_ptr<spdlog::logger>& log);
  void start_worker(const config::Service& service, const Identity& identity, kj::Array<capnp::word> settings,
                    const std::shared_ptr<spdlog::logger>& log);
  std::optional<std::string> prepare_service(const config::Service& service, const Identity& identity);
  void launch(Supervised& child);
  kj::Promise<void> supervise(Supervised& child);
  kj::Promise<bool> run_once(Supervised& child);
  SpawnSpec child_spec(const Identity& identity) const;  // confined like a worker
  bool spawn(Supervised& child);
  kj::Promise<void> stop(Supervised& child);
  kj::Promise<bool> ensure_mounted(const config::Service& service);
  kj::Promise<int> run_root_program(std::vector<std::string> argv, std::chrono::seconds timeout);
  // The wait status of a child; SIGKILL (and that status) when it outlives `timeout`.
  kj::Promise<int> wait_child(pid_t pid, std::chrono::seconds timeout, std::string what);
  void remove_stale_services();
  void retire(const std::string& name);
  void bring_down_retired(const std::string& name, const Identity& identity, int attempt);
  void finish_retirement(const std::string& name, bool downed);
  void end_retirement(const std::string& name);
  // The docker gate's sockets: one per service, bound or re-owned as the service's user changes.
  std::optional<std::string> open_gate_socket(const std::string& name, uid_t owner, std::vector<std::string> bind_roots,
                                              std::vector<std::string> networks);
  void close_gate_socket(const std::string& name);
  // Restarts the gate when the set of sockets (or what it knows about them) changed.
  void refresh_dockergate();
  bool spawn_dockergate(Supervised& child, SpawnSpec& spec, UniqueFd& settings_fd);
  std::string describe_gate_sockets() const;
  std::pair<gid_t, mode_t> service_top_access(const Identity& identity) const;
  GateOffer gate_offer(int first_fd);
  static const char* kind_of(const Supervised& child);

  kj::AsyncIoContext& io_;
  SupervisorSettings settings_;
  SeccompProgram worker_filter_;
  config::Config config_;
  std::map<std::string, std::unique_ptr<Supervised>> workers_;
  std::unique_ptr<Supervised> gateway_;
  // The docker gate, and each service's socket on it (bound by pgod, owned by the user whose
  // processes may use it: the service's, or nobody's while a removed service is brought down).
  struct GateSocket {
    UniqueFd fd;
    uid_t owner = 0;
    std::vector<std::string> bind_roots;
    std::vector<std::string> networks;
  };
  std::unique_ptr<Supervised> dockergate_;
  std::map<std::string, GateSocket> gate_sockets_;
  std::string dockergate_served_;  // what the running gate was given, to restart it on a change
  kj::Own<DockerGateHandover> handover_;
  unsigned shares_mounted_ = 0;  // each mount restarts the gate, whose root is a copy of the tree
  std::set<std::string> retiring_;
  std::map<std::string, std::string> not_started_;  // name → why: shown in the service list
  bool shutting_down_ = false;
  kj::TaskSet tasks_;
};

}  // namespace pgod::supervisor
