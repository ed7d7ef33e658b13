// Runs one program for the worker: argv only (never a shell), its own process group, a given
// environment and directory, stdout/stderr as async pipes, optional stdin text, and a deadline.
// Dropping the ChildProcess (a cancelled call, a dead client, a timeout) kills the whole
// process group, so `docker compose logs -f` and everything it started go away with it.
// Optional limits bound what a hostile input can make it cost: memory, output, time.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pgod::worker {

// How much of a streamed command's output is read and sent at a time, and what its stdout pipe
// holds (256 KiB: fewer, larger RPC messages; measured in docs/PERFORMANCE.md, row 2).
inline constexpr std::size_t kOutputChunk = std::size_t{256} << 10;

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH from `env`
  std::vector<std::string> env;   // "NAME=VALUE", the whole environment
  std::string cwd;
  std::optional<std::string> stdin_text;  // written then closed; /dev/null when absent
  // Killed (TERM to the group, then KILL) when it runs longer. nullopt: until cancelled.
  std::optional<std::chrono::milliseconds> timeout;
  // Bytes of stdout and stderr together: printing more stops it the way the timeout does, and
  // what is kept stays within the limit. Only run_collect reads the output, so only it applies
  // this; a ChildProcess leaves its streams, and their size, to its caller.
  std::optional<std::size_t> output_limit = std::nullopt;
  // Bytes of memory, as RLIMIT_DATA (soft and hard), set in the child before exec and inherited
  // by everything it starts, each process on its own. An allocation beyond it fails, and the
  // program fails its own way (Go: "fatal error: runtime: out of memory", exit 2; Python:
  // MemoryError, exit 1); nothing here tells that apart from other failures.
  // Not RLIMIT_AS: Go reserves address space it never uses (docker compose v2 runs at ~1.8 GB
  // of address space for ~60 MB of memory), so that limit measures the runtime, not the input.
  // RLIMIT_DATA counts writable private mappings: the heap, and each thread's stack (8 MB a
  // thread by default; `config` stays under 150 MB even with GOMAXPROCS=256).
  std::optional<std::uint64_t> memory_limit = std::nullopt;
};

struct ChildExit {
  int code = -1;  // exit code, or 128 + signal when killed by one (as shells report)
  bool timed_out = false;
  bool output_limit_exceeded = false;  // run_collect stopped it for printing more than output_limit
};

// What the worker runs `compose config` on is the repository's compose file, so anyone who can
// push chooses it, and YAML aliases make a small file a huge model. Measured on Debian 12 with
// Compose 2.26.1 and docker-compose 1.29.2 (tests/worker/compose_config_limits_test.cc has the
// bombs, and checks each ends by its limit):
// - time, 30 s: a normal file takes ~0.1 s (v2) or ~0.6 s (v1); the largest the worker reads
//   (1 MiB, 3500 services) 6 s and 25 s. A 540-byte bomb (nine levels of nine aliases) keeps
//   v2 on a core for over a minute at a steady ~60 MB, and grows v1 by ~5 MB a second: only
//   the time limit stops them. Through the docker CLI (20.10 and 28), neither the CLI nor the
//   plugin ends on TERM; the KILL after the grace period does: ~35 s in all.
// - memory, 1 GiB of RLIMIT_DATA (see memory_limit): the 1 MiB file needs ~320 MB (v2); a
//   30 KB bomb (aliases of 3000-byte strings) needs more than 4 GB and now fails in seconds.
//   RLIMIT_AS of 1 GiB made v2 fail at ~100 MB on files that need 300-400 MB.
// - output, 8 MiB: the 1 MiB file normalises to 2 MB (v2); a 10 KB bomb to 21 MB in a second.
//   The worker keeps and parses what config prints: it must stay small.
// The caller: limit_as_compose_config(spec), then run_collect; check exit.output_limit_exceeded
// and exit.timed_out before exit.code (the output limit may be found after a clean exit).
inline constexpr std::chrono::seconds kComposeConfigTimeLimit{30};
inline constexpr std::uint64_t kComposeConfigMemoryLimit = std::uint64_t{1} << 30;
inline constexpr std::size_t kComposeConfigOutputLimit = std::size_t{8} << 20;

// Puts the limits above on a `compose config` spec (timeout, memory_limit, output_limit).
void limit_as_compose_config(ChildSpec& spec);

class ChildProcess {
 public:
  // Throws kj::Exception (with the program and reason) when the program cannot be started.
  ChildProcess(kj::LowLevelAsyncIoProvider& io, kj::UnixEventPort& events, kj::Timer& timer, const ChildSpec& spec);
  ~ChildProcess();  // kills the process group if it is still running
  KJ_DISALLOW_COPY(ChildProcess);

  kj::AsyncInputStream& stdout_stream() { return *stdout_; }
  // The stdout pipe's read end, taken out of this object to be read elsewhere: from then on
  // stdout_stream() is gone, and no wake-up here follows each write into the pipe. An invalid
  // descriptor (and the stream left in place) if it cannot be duplicated.
  kj::AutoCloseFd take_stdout();
  kj::AsyncInputStream& stderr_stream() { return *stderr_; }

  // Resolves when the child has exited (and was reaped), or was killed at its deadline.
  kj::Promise<ChildExit> exited();

  // TERM to the whole group now, KILL after a grace period if anything is left. Again while
  // the grace period runs: nothing (the KILL is not put off).
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
  int stdout_fd_ = -1;  // owned by stdout_
  kj::Own<kj::AsyncInputStream> stderr_;
  kj::Own<kj::AsyncOutputStream> stdin_;
  kj::ForkedPromise<int> status_;
  std::optional<std::chrono::milliseconds> timeout_;
  bool timed_out_ = false;
  bool terminating_ = false;
  kj::Promise<void> deadline_ = nullptr;  // TERM at the timeout
  kj::Promise<void> grace_ = nullptr;     // KILL after TERM; apart, as the deadline starts it
};

// Runs to completion, collecting output (bounded: beyond `max_bytes` per stream the rest is
// dropped; beyond spec.output_limit for both streams together the child is stopped too, and
// exit.output_limit_exceeded says so). For short internal commands: compose config, docker
// login/logout, version probes.
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
