// pgod as a real root process for integration tests: real test users (created with useradd for
// the test program and removed with userdel at its end), real bare git repositories, the
// recording stand-in docker first in the workers' PATH, and the supervisor's own socket to ask
// which workers run. The programs are copied to a world-readable directory so that workers
// running as the test users can execute them wherever the build tree lives.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "git_fixture.h"
#include "process.h"

namespace pgod::test {

struct TestUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Four users for the whole test program: three service users (pgod refuses a user shared by
// two services) and the gateway's.
const TestUser& service_user_a();
const TestUser& service_user_b();
const TestUser& service_user_c();
const TestUser& gateway_user();
const TestUser& dockergate_user();  // the docker gate's: pgod adds the docker group to it alone
gid_t docker_group();               // the host's docker group

// pgod, pgod-worker, pgod-gateway and the test probes (exec-probe, confinement-probe), copied
// once to a 0755 directory.
const std::string& programs_dir();

struct WorkerRow {
  std::string name;
  std::string state;  // running, backing-off, stopped
  pid_t pid = 0;
  unsigned restarts = 0;
  std::string last_exit;
  std::string mount_error;
};

class PgodHarness {
 public:
  PgodHarness();
  ~PgodHarness();
  PgodHarness(const PgodHarness&) = delete;
  PgodHarness& operator=(const PgodHarness&) = delete;

  // A bare repository with a compose file, readable by the test users; created on first use.
  GitUpstream& upstream(const std::string& name);
  // One [[services]] table: name, user, the upstream of that name, plus extra TOML lines.
  static std::string service_toml(const std::string& name, const std::string& user, const std::string& repository,
                                  const std::string& extra = "");
  // Writes pgo.toml with mode 0600 (replaced by rename).
  void write_config(const std::string& text) const;
  std::string config_path() const { return root_.path() + "/pgo.toml"; }

  // Starts pgod (-c, -d, --rundir, --path-prefix, --no-gateway unless `args` name a gateway
  // program) and, with `wait`, waits until its socket answers.
  void start(std::vector<std::string> args = {}, bool wait = true);
  // "NAME=VALUE" added to pgod's environment (NOTIFY_SOCKET, WATCHDOG_USEC).
  void add_env(std::string entry) { extra_env_.push_back(std::move(entry)); }
  // Workers run the real docker and docker-compose instead of the stand-in.
  void use_real_docker() { standin_ = false; }
  void send_signal(int signal_number) const;
  // Sends `signal_number` and waits for pgod to exit; its exit code (-1: killed, or timed out).
  int stop(int signal_number = 15, std::chrono::seconds limit = std::chrono::seconds(30));
  pid_t pid() const { return pid_; }

  std::vector<WorkerRow> workers() const;
  std::optional<WorkerRow> worker(const std::string& name) const;
  pid_t worker_pid(const std::string& name) const;  // 0 when not running
  // Polls `pred` every 20 ms until it holds or `limit` passes.
  static bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(20));
  // Waits until every named worker runs and has logged that its first cycle finished.
  bool wait_ready(const std::vector<std::string>& names, std::chrono::milliseconds limit = std::chrono::seconds(20));

  std::string log() const;    // pgod's (and its children's) stderr
  std::string calls() const;  // the stand-in docker's calls.log
  const std::string& dir() const { return dir_; }
  const std::string& rundir() const { return rundir_; }
  const std::string& datadir() const { return datadir_; }
  const std::string& standin_dir() const { return bin_; }
  const std::string& root() const { return root_.path(); }

 private:
  TempDir root_;
  std::string bin_, dir_, rundir_, datadir_, repos_, log_file_;
  std::map<std::string, std::unique_ptr<GitUpstream>> upstreams_;
  pid_t pid_ = -1;
  bool standin_ = true;
  std::vector<std::string> extra_env_;
};

// /proc/<pid>/status as key → value (the text after the tab).
std::map<std::string, std::string> proc_status(pid_t pid);
// /proc/<pid>/fd: fd number → what it points at.
std::map<int, std::string> proc_fds(pid_t pid);

// The PID in pgod's log line "[pgod-gateway] gateway started as USER (pid N)": the last one,
// and how many such lines there are.
pid_t gateway_pid(const std::string& pgod_log);
std::size_t gateway_starts(const std::string& pgod_log);

}  // namespace pgod::test
