// Runs a real pgod-worker process by hand (--settings FILE --socket PATH) against a real git
// repository, with the recording stand-in docker first in its PATH, and talks to it over its
// Cap'n Proto socket like the gateway does.
#pragma once

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dockergate_process.h"
#include "process.h"
#include "settings.capnp.h"
#include "worker.capnp.h"

namespace pgod::test {

struct RunOutcome {
  std::uint32_t exit_status = 0;
  std::string message;
  std::string out;
  std::string err;
};

// An OutputSink that appends what it receives to two strings (the caller keeps them alive).
class CollectingSink final : public rpc::OutputSink::Server {
 public:
  CollectingSink(std::string& out, std::string& err) : out_(out), err_(err) {}
  kj::Promise<void> stdout(StdoutContext context) override;
  kj::Promise<void> stderr(StderrContext context) override;

 private:
  std::string& out_;
  std::string& err_;
};

class WorkerHarness {
 public:
  // `configure` may change the settings before they are written (defaults: service "web",
  // user uid 1000 so the policy applies, poll interval 1h so only `git pull` cycles).
  // `standin`: put the recording stand-in docker first in the worker's PATH (else the real
  // docker and docker-compose run). Without the stand-in, in a program with an engine
  // (shared_docker_environment(), support/docker_env_setup.cc), a pgod-dockergate of the
  // harness's own serves the service, as pgod would: the settings' dockerHost is its socket, so
  // every docker and compose call of the worker goes through it. In a program without an engine
  // (compose config only) there is no gate.
  WorkerHarness(const std::string& repository, const std::function<void(rpc::ServiceSettings::Builder)>& configure = {},
                bool standin = true);
  ~WorkerHarness();

  // Spawns the worker and waits for its socket. With `inherited`, the way pgod starts it: the
  // test binds and listens, and hands the socket and the settings (through a pipe) as fds.
  void start(const std::vector<std::string>& extra_args = {}, bool inherited = false);
  int stop();  // SIGTERM, then waits for it to exit; its exit code (-1: killed or not running)

  rpc::Worker::Client client();
  RunOutcome run(rpc::Verb verb, const std::vector<std::string>& args = {});
  rpc::ServiceState state();
  // Waits until pred() holds, turning the event loop; fails the test after `limit`.
  bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(20));
  void sleep(std::chrono::milliseconds duration);

  std::string calls() const;  // the stand-in's calls.log
  void clear_calls() const;
  std::string worker_log() const;                                // the worker's stderr
  std::string gate_log() const;                                  // the docker gate's log (empty without a gate)
  const DockerGateProcess* gate() const { return gate_.get(); }  // nullptr without a gate
  void touch(const std::string& name) const;                     // a steering file for the stand-in (fail-up, …)

  const std::string& checkout_dir() const { return checkout_; }
  const std::string& stop_file() const { return stop_file_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& standin_dir() const { return bin_; }
  const std::string& socket_path() const { return socket_; }
  pid_t pid() const { return pid_; }
  kj::AsyncIoContext& io() { return *io_; }

 private:
  TempDir root_;
  std::string bin_, checkout_, state_dir_, stop_file_, socket_, settings_file_, log_file_;
  bool standin_ = true;
  std::unique_ptr<DockerGateProcess> gate_;  // stopped after the worker, before root_ goes
  pid_t pid_ = -1;
  std::unique_ptr<kj::AsyncIoContext> io_;
  kj::Own<kj::AsyncIoStream> connection_;
  kj::Own<capnp::TwoPartyClient> rpc_;
};

}  // namespace pgod::test
