// A real pgod-dockergate process for tests and benchmarks, started as pgod starts it
// (Supervisor::spawn_dockergate): a DockerGateSettings message (proto/dockergate.capnp) on a
// memfd at fd 3, one listening unix socket per service at fds 4 on, bound here before the start.
// It runs as the caller, or as a given uid/gid with the docker group as its only supplementary
// group (as pgod runs it as pgod-docker); its stdout and stderr go to a log file. Stopped by its
// PID (SIGTERM, then SIGKILL, reaped) when the object goes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "process.h"

namespace pgod::test {

struct DockerGateService {
  std::string name;
  std::string project;                  // its compose project (compose_project_name(name))
  std::vector<std::string> bind_roots;  // bind sources must be inside one of them
  std::vector<std::string> networks;    // the external networks it may join
};

struct DockerGateUser {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct DockerGateOptions {
  std::string program;                 // the pgod-dockergate binary (readable and executable by `user`)
  std::string socket_dir;              // each service's socket is <socket_dir>/<name>.sock; empty: a temp dir
  std::string log;                     // the gate's stdout and stderr (appended); empty: <socket_dir>/dockergate.log
  std::optional<DockerGateUser> user;  // run as this uid/gid with the docker group only; none: as the caller
  bool debug = false;                  // each forwarded call logged
  std::string docker_socket = "/var/run/docker.sock";
};

class DockerGateProcess {
 public:
  // Binds the sockets (a stale file at a socket's path is removed first), writes the settings
  // and starts the gate. Does not wait for it: see wait_ready().
  DockerGateProcess(const DockerGateOptions& options, const std::vector<DockerGateService>& services);
  ~DockerGateProcess();
  DockerGateProcess(const DockerGateProcess&) = delete;
  DockerGateProcess& operator=(const DockerGateProcess&) = delete;

  // Until every socket answers GET /_ping with 200; throws with the gate's log when the gate
  // exits meanwhile or `limit` passes.
  void wait_ready(std::chrono::milliseconds limit = std::chrono::seconds(10));
  // SIGTERM, then SIGKILL after `grace`, by its PID; reaped; the socket files removed. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(2));

  pid_t pid() const { return pid_; }                         // -1 once stopped
  const std::string& socket(const std::string& name) const;  // the path of a service's socket
  const std::string& log() const { return log_; }            // the log file's path
  std::string log_text() const;                              // what the gate has logged so far

 private:
  std::unique_ptr<TempDir> own_dir_;
  std::vector<std::pair<std::string, std::string>> sockets_;  // service name, socket path
  std::string log_;
  pid_t pid_ = -1;
};

// One GET /_ping on a docker socket, as a docker client writes it: whether it answered 200 OK.
bool docker_ping(const std::string& socket_path, std::chrono::seconds timeout = std::chrono::seconds(10));

}  // namespace pgod::test
