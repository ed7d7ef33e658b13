// pgod's command line: the flags of pgod(8), with its defaults, plus --check.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "expected.h"

namespace pgod::supervisor {

struct Options {
  std::string config = "/etc/pgo.toml";
  std::string dir = "/var/lib/pgo";
  std::string ssh = ":2222";
  std::chrono::nanoseconds duration = std::chrono::minutes(5);
  std::string datadir;  // empty: no NFS mounts, binds only inside the checkout
  std::string metrics = ":9112";
  std::string hooks = "127.0.0.1:9113";  // push hooks; loopback: a TLS proxy on this host in front
  bool debug = false;
  bool restart = true;
  std::string compose = "auto";  // auto, plugin or standalone (compose_program.h)

  // Beyond the original's flags: where the sockets live, the gateway child, the programs pgod
  // runs, and escapes for tests.
  std::string rundir = "/run/pgod";
  bool no_gateway = false;  // pgod-gateway runs as its own unit
  std::string gateway_user = "pgod-gw";
  std::string gateway_limits;                              // "name=value,…" of the gateway's limit flags
  std::vector<std::string> gateway_limit_args;             // the same, as --name=value (parse_options)
  std::string host_key = "/etc/pgo/ssh_host_ed25519_key";  // made on first start when missing
  std::string worker_program;                              // empty: pgod-worker next to pgod
  std::string gateway_program;                             // empty: pgod-gateway next to pgod
  bool no_dockergate = false;  // the docker gate runs as its own unit and takes its sockets from pgod
  bool docker_direct = false;  // no docker gate at all: workers use --docker-socket (tests, stand-in docker)
  std::string dockergate_user = "pgod-docker";         // the gate's user, the only one in the docker group
  std::string dockergate_program;                      // empty: pgod-dockergate next to pgod
  std::string docker_socket = "/var/run/docker.sock";  // dockerd's socket, which only the gate opens
  std::string mount_program = "/bin/mount";
  std::string umount_program = "/bin/umount";
  bool mount_with_systemd = false;  // NFS mounts by systemd (PID 1), for a sandboxed pgod.service
  std::string path_prefix;          // tests: a directory put before PATH in workers
  bool no_root_check = false;
  bool status = false;         // ask a running pgod for its services and exit
  std::string restart_worker;  // ask a running pgod to restart this worker and exit
  bool make_host_key = false;  // make the host key if missing, print it, and exit
  bool version = false;
  bool check = false;
  bool help = false;
};

struct ParsedOptions {
  Options options;
  std::string usage;
};

// Parses and checks the flags; the error says which flag and what it expects.
Expected<ParsedOptions, std::string> parse_options(const std::vector<std::string>& args);

}  // namespace pgod::supervisor
