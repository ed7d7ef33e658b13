// Where everything of one service lives on the host, and what its worker is told: the one
// place that turns pgo.toml plus pgod's flags into paths and a worker's settings message.
#pragma once

#include <capnp/message.h>
#include <kj/array.h>

#include <chrono>
#include <string>

#include "compose_program.h"
#include "config.h"
#include "confine.h"

namespace pgod::supervisor {

struct Layout {
  std::string dir;      // -d: checkouts, <dir>/<svc>
  std::string datadir;  // --datadir: NFS mounts, <datadir>/<svc>; may be empty
  std::string rundir;   // --rundir: supervisor.sock and workers/<svc>.sock

  std::string checkout(const std::string& name) const { return dir + "/" + name; }
  std::string stop_file(const std::string& name) const { return dir + "/" + name + ".stop"; }
  // Per-service state (freeze/rollback, DOCKER_CONFIG, the validated model). Under a dot
  // directory, which no service name can be, so it is never taken for a stale service.
  std::string state_root() const { return dir + "/.pgod"; }
  std::string state(const std::string& name) const { return state_root() + "/" + name; }
  std::string data(const std::string& name) const { return datadir.empty() ? "" : datadir + "/" + name; }
  std::string workers_dir() const { return rundir + "/workers"; }
  std::string worker_socket(const std::string& name) const { return workers_dir() + "/" + name + ".sock"; }
  std::string supervisor_socket() const { return rundir + "/supervisor.sock"; }
  // Each service's docker socket, served by the docker gate: owned by the service's user.
  std::string docker_dir() const { return rundir + "/docker"; }
  std::string docker_socket(const std::string& name) const { return docker_dir() + "/" + name + ".sock"; }
};

struct WorkerDefaults {
  std::chrono::nanoseconds poll_interval{};
  uid_t gateway_uid = 0;
  bool debug = false;
  ComposeProgram compose_program = ComposeProgram::AUTO;
  bool docker_gate = false;  // workers reach docker through their socket on the docker gate
};

// The Caddy snippet for the service that has `import`: one site block per url of every
// service, sorted by host, so the content (and whether a worker restarts) does not depend on
// the order of pgo.toml.
std::string caddy_import(const config::Config& config);

// One service's settings, and nothing of any other service (the Caddy content is derived from
// every service's urls, which are not secret).
kj::Array<capnp::word> worker_settings(const config::Service& service, const Identity& identity, const Layout& layout,
                                       const WorkerDefaults& defaults, const std::string& caddy);

// The settings of a one-shot worker that judges the service's deployed compose model for
// `pgod --check`: where the service lives and what its policy depends on (the user, the
// allowed networks), and none of its secrets (repository URL, env, registry logins).
kj::Array<capnp::word> judge_settings(const config::Service& service, const Identity& identity, const Layout& layout,
                                      const WorkerDefaults& defaults);

// The settings of a one-shot worker that brings a removed service's project down, working in
// `work_dir` (its checkout and state directory both: it reads nothing of the old checkout).
kj::Array<capnp::word> retire_settings(const std::string& name, const Identity& identity, const Layout& layout,
                                       const WorkerDefaults& defaults, const std::string& work_dir);

}  // namespace pgod::supervisor
