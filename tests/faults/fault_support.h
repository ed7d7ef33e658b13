// Shared pieces of the fault suite (tests/faults): clients for the real gateway (OpenSSH's ssh
// and pgoctl with keys made by ssh-keygen), a direct Cap'n Proto client for a worker's socket
// with a time limit (a fresh connection per call, so an answer can only come from whichever
// worker is accepting at that moment), and small process and descriptor helpers.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "pgod_harness.h"
#include "process.h"

namespace pgod::test::faults {

using Millis = std::chrono::milliseconds;

// An ed25519 key pair made by ssh-keygen in `dir`; returns the private key's path.
std::string make_key(const std::string& dir, const std::string& name);

// The ssh and metrics ports of a gateway started by pgod, and how to reach it.
struct GatewayPorts {
  int ssh = 0;
  int metrics = 0;
  std::vector<std::string> pgod_args() const;  // --gateway-program, -s, -m for PgodHarness::start
};

// OpenSSH's ssh against 127.0.0.1:port (no agent, no config, no host-key check); `extra` goes
// before the destination (e.g. -S for a control master). ssh() runs it under timeout(1), so a
// hung session fails the test instead of stalling it.
std::vector<std::string> ssh_argv(int port, const std::string& key, const std::string& command,
                                  const std::vector<std::string>& extra = {});
ProcessResult ssh(int port, const std::string& key, const std::string& command,
                  const std::vector<std::string>& extra = {});

// pgoctl -p PORT --known-hosts FILE -i KEY -- 127.0.0.1:<target> [args...], bounded likewise.
ProcessResult pgoctl(int port, const std::string& known_hosts, const std::string& key, const std::string& target,
                     const std::vector<std::string>& args = {});

// One call to a worker over its socket, on a fresh connection, within `limit`.
struct WorkerAnswer {
  bool answered = false;
  std::string state;  // OK, BROKEN, DIFF, ... (status calls)
  std::string hash;   // the checkout's commit (status calls)
  std::string last_error;
  std::string failure;  // why there was no answer
};
WorkerAnswer worker_status(const std::string& socket_path, Millis limit);

// True once `pid` has exited (a zombie counts: it runs no more code) or never existed.
bool has_exited(pid_t pid);
// PIDs of the processes whose executable is `program` (by /proc/PID/exe).
std::vector<pid_t> processes_of(const std::string& program);
// Open descriptors of a process (0 when it cannot be read).
std::size_t fd_count(pid_t pid);

// Raises this process's soft RLIMIT_NOFILE to at least `wanted` (within the hard limit);
// returns the soft limit now in force.
std::size_t raise_fd_limit(std::size_t wanted);

std::size_t count(const std::string& text, const std::string& needle);

// Median and maximum of a set of durations, in milliseconds.
struct Spread {
  double median_ms = 0;
  double max_ms = 0;
};
Spread spread(std::vector<Millis> samples);

}  // namespace pgod::test::faults
