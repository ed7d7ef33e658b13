// Runs one program for the worker: argv only (never a shell), its own process group, a given
// environment and directory, stdout/stderr as async pipes, optional stdin text, and a deadline.
// Dropping the ChildProcess (a cancelled call, a dead client, a timeout) kills the whole
// process group, so `docker compose logs -f` and everything it started go away with it.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pgod::worker {

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH from `env`
  std::vector<std::string> env;   // "NAME=VALUE", the whole environment
  std::string cwd;
  std::optional<std::string> stdin_text;  // written then closed; /dev/null when absent
  // Killed (TERM to the group, then KILL) when it runs longer. nullopt: until cancelled.
  std::optional<std::chrono::milliseconds> timeout;
};

struct ChildExit {
  int code = -1;       // exit code, or 128 + signal when killed by one (as shells report)
  bool timed_out = false;
};

class ChildProcess {
 public:
  // Throws kj::Exception (with the program and reason) when the program cannot be started.
  ChildProcess(kj::LowLevelAsyncIoProvider& io, kj::UnixEventPort& events, kj::Timer& timer, const ChildSpec& spec);
  ~ChildProcess();  // kills the process group if it is still running
  KJ_DISALLOW_COPY(ChildProcess);

  kj::AsyncInputStream& stdout_stream() { return *stdout_; }
  kj::AsyncInputStream& stderr_stream() { return *stderr_; }

  // Resolves when the child has exited (and was reaped), or was killed at its deadline.
  kj::Promise<ChildExit> exited();

  // TERM to the whole group now, KILL after `grace` if anything is left.
  void terminate();

  pid_t pid() const { return pid_; }

 private:
  void kill_group(int signal);

  pid_t pid_ = -1;
  // Nulled by KJ once reaped (after that the pid may be reused). Shared with the reaping
  // promise: that promise may outlive this object (see the destructor), and a resolved fork
  // drops what was attached to it, so neither side may own it alone.
  std::shared_ptr<kj::Maybe<pid_t>> reap_handle_;
  kj::Timer& timer_;
  kj::Own<kj::AsyncInputStream> stdout_;
  kj::Own<kj::AsyncInputStream> stderr_;
  kj::Own<kj::AsyncOutputStream> stdin_;
  kj::ForkedPromise<int> status_;
  std::optional<std::chrono::milliseconds> timeout_;
  bool timed_out_ = false;
  kj::Promise<void> deadline_ = nullptr;  // TERM at the timeout
  kj::Promise<void> grace_ = nullptr;     // KILL after TERM; apart, as the deadline starts it
};

// Runs to completion, collecting output (bounded: beyond `max_bytes` per stream the rest is
// dropped). For short internal commands: compose config, docker login/logout, version probes.
struct CollectedOutput {
  ChildExit exit;
  std::string out;
  std::string err;
};
kj::Promise<CollectedOutput> run_collect(kj::LowLevelAsyncIoProvider& io, kj::UnixEventPort& events, kj::Timer& timer,
                                         const ChildSpec& spec, std::size_t max_bytes = 16 << 20);

// PATH lookup the way execvp does it, against the PATH in `env` (the worker's minimal one).
std::optional<std::string> find_program(const std::string& name, const std::vector<std::string>& env);

}  // namespace pgod::worker
