#include "child_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <kj/debug.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "safe_files.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

constexpr auto kKillGrace = 5 * kj::SECONDS;
// Small stdin (a registry token) is written in one go: the pipe buffer holds it.
constexpr std::size_t kMaxStdin = 60000;

struct Pipe {
  UniqueFd read_end, write_end;
};

Pipe make_pipe() {
  int fds[2];
  KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// What the child needs between fork and exec, all prepared before the fork: the worker has
// threads, so the child may only make async-signal-safe calls (no allocation, no locks).
struct ExecPlan {
  const char* program;
  char* const* argv;
  char* const* envp;
  const char* cwd;  // nullptr: stay
  int stdin_fd, stdout_fd, stderr_fd;
  std::optional<std::uint64_t> memory_limit;
};

// Why the child did not reach the program, sent up a close-on-exec pipe: the parent reads
// nothing when exec succeeded.
struct StartFailure {
  const char* step;  // a string literal: the same address in the parent's copy of the image
  int error;
};

// Makes `from` the child's `to`, without close-on-exec (dup2 onto itself would keep the flag).
bool move_fd(int from, int to) {
  if (from == to) return fcntl(to, F_SETFD, 0) == 0;
  return dup2(from, to) == to;
}

// Between fork and exec: the raw errno goes up, as formatting it (errno_text) would allocate.
[[noreturn]] void report_and_exit(int report, const char* step) {
  const StartFailure failure{step, errno};
  [[maybe_unused]] const auto written = write(report, &failure, sizeof failure);
  _exit(127);
}

// The child's side of the fork, step by step, in the order they must happen. Only syscalls.
[[noreturn]] void exec_child(const ExecPlan& plan, int report) {
  auto give_up = [report](const char* step) { report_and_exit(report, step); };
  // Its own process group, so one kill reaches everything it starts.
  if (setpgid(0, 0) != 0) give_up("setpgid");
  if (!move_fd(plan.stdin_fd, 0) || !move_fd(plan.stdout_fd, 1) || !move_fd(plan.stderr_fd, 2)) give_up("dup2");
  if (plan.cwd != nullptr && chdir(plan.cwd) != 0) give_up("chdir");
  // Soft and hard: what it runs cannot raise it again.
  if (plan.memory_limit) {
    const rlimit limit{static_cast<rlim_t>(*plan.memory_limit), static_cast<rlim_t>(*plan.memory_limit)};
    if (setrlimit(RLIMIT_DATA, &limit) != 0) give_up("setrlimit(RLIMIT_DATA)");
  }
  // A clean signal state: KJ blocks the signals it captures and the worker has handlers, none
  // of which the program should inherit. Dispositions first, then the mask (blocked since
  // before the fork), so no signal can reach a handler of the worker in this copy of it. The
  // few signals glibc keeps for itself refuse SIG_DFL; they are never delivered here.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal) sigaction(signal, &default_action, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) give_up("sigprocmask");
  execve(plan.program, plan.argv, plan.envp);
  report_and_exit(report, "execve");
}

// Forks the child with every signal blocked (the child unblocks them once its handlers are
// gone), and waits until it has exec'd the program (or failed to): when this returns, its
// process group exists, so a kill cannot miss it. Not posix_spawn, which cannot set a limit;
// fork copies the worker's page tables (+0.1 ms for a small worker, ~1 ms per 50 MB of it).
// _Fork, not fork: no atfork handlers (a library's could wait for a lock another thread
// holds), which a child that only makes syscalls and execs does not need.
pid_t start_child(const ExecPlan& plan) {
  Pipe report = make_pipe();
  sigset_t all, previous;
  sigfillset(&all);
  KJ_REQUIRE(pthread_sigmask(SIG_SETMASK, &all, &previous) == 0);
  const pid_t pid = _Fork();
  if (pid == 0) {
    report.read_end.reset();
    exec_child(plan, report.write_end.get());
  }
  const int fork_error = errno;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) fail(fmt::format("cannot start {}: fork: {}", plan.program, errno_text(fork_error)));
  report.write_end.reset();

  StartFailure failure{};
  const ssize_t n = retry_eintr([&] { return read(report.read_end.get(), &failure, sizeof failure); });
  if (n == 0) return pid;  // exec closed the pipe
  // It did not start and exits at once: reap it here, nobody else knows of it.
  int status;
  retry_eintr([&] { return waitpid(pid, &status, 0); });
  if (n != static_cast<ssize_t>(sizeof failure))
    fail(fmt::format("cannot start {}: the child failed without saying why", plan.program));
  fail(fmt::format("cannot start {} in {}: {}: {}", plan.program, plan.cwd != nullptr ? plan.cwd : ".", failure.step,
                   errno_text(failure.error)));
}

}  // namespace

std::optional<std::string> find_program(const std::string& name, const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& entry : env)
    if (entry.rfind("PATH=", 0) == 0) path = entry.substr(5);
  std::size_t begin = 0;
  while (begin <= path.size()) {
    const auto end = std::min(path.find(':', begin), path.size());
    const auto dir = path.substr(begin, end - begin);
    if (!dir.empty()) {
      const auto candidate = dir + "/" + name;
      struct stat info {};
      if (stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) && access(candidate.c_str(), X_OK) == 0)
        return candidate;
    }
    begin = end + 1;
  }
  return std::nullopt;
}

ChildProcess::ChildProcess(kj::LowLevelAsyncIoProvider& io, kj::UnixEventPort& events, kj::Timer& timer,
                           const ChildSpec& spec)
    : timer_(timer), status_(kj::Promise<int>(0).fork()), timeout_(spec.timeout) {
  KJ_REQUIRE(!spec.argv.empty(), "no program to run");
  const auto program = find_program(spec.argv[0], spec.env);
  if (!program) fail(spec.argv[0] + ": program not found in PATH");
  KJ_REQUIRE(!spec.stdin_text || spec.stdin_text->size() <= kMaxStdin, "stdin text too large");

  Pipe out = make_pipe();
  Pipe err = make_pipe();
  // A streamed command's output leaves in reads of kOutputChunk (see pump in service.cc): a pipe
  // that holds one lets the command go on writing while the worker sends. Every child's stdout
  // gets it (the collected ones only cost pages of the service user's pipe allowance). Best
  // effort: refused (EPERM past the user's allowance or above pipe-max-size), the pipe keeps
  // what the kernel gave it, which only slows a stream.
  (void)fcntl(out.read_end.get(), F_SETPIPE_SZ, static_cast<int>(kOutputChunk));
  Pipe in = make_pipe();

  std::vector<char*> argv;
  for (const auto& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& entry : spec.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  const ExecPlan plan{
      program->c_str(),  argv.data(),         envp.data(),         spec.cwd.empty() ? nullptr : spec.cwd.c_str(),
      in.read_end.get(), out.write_end.get(), err.write_end.get(), spec.memory_limit};
  const pid_t pid = start_child(plan);
  pid_ = pid;
  reap_handle_ = std::make_shared<kj::Maybe<pid_t>>(pid);
  // Must be registered before returning to the event loop, or the exit could be missed.
  status_ = events.onChildExit(*reap_handle_).attach(std::shared_ptr(reap_handle_)).fork();

  in.read_end.reset();
  out.write_end.reset();
  err.write_end.reset();
  if (spec.stdin_text && !spec.stdin_text->empty()) {
    const auto& text = *spec.stdin_text;
    // The child may exit without reading: EPIPE is its business, reported by its exit code.
    retry_eintr([&] { return write(in.write_end.get(), text.data(), text.size()); });
  }
  in.write_end.reset();

  const auto flags = kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC;
  stdout_fd_ = out.read_end.get();
  stdout_ = io.wrapInputFd(out.read_end.release(), flags);
  stderr_ = io.wrapInputFd(err.read_end.release(), flags);

  if (timeout_) {
    // KJ continuations run only when pulled: eagerlyEvaluate makes the deadline act on its own.
    deadline_ = timer_.afterDelay(timeout_->count() * kj::MILLISECONDS)
                    .then([this]() {
                      timed_out_ = true;
                      terminate();
                    })
                    .eagerlyEvaluate(nullptr);
  }
}

ChildProcess::~ChildProcess() {
  if (reap_handle_ != nullptr && *reap_handle_ != nullptr) {
    kill_group(SIGKILL);
    // Keep waiting for the exit in the background so the child is reaped, not left a zombie.
    status_.addBranch().detach([](kj::Exception&&) {});
  }
}

void ChildProcess::kill_group(int signal) {
  // Once reaped, the pid (and so the group id) may belong to someone else.
  if (reap_handle_ == nullptr || *reap_handle_ == nullptr) return;
  if (kill(-pid_, signal) != 0 && errno != ESRCH)
    spdlog::warn("kill({}, {}) failed: {}", -pid_, signal, errno_text(errno));
}

void ChildProcess::terminate() {
  if (terminating_) return;
  terminating_ = true;
  kill_group(SIGTERM);
  grace_ = timer_.afterDelay(kKillGrace).then([this]() { kill_group(SIGKILL); }).eagerlyEvaluate(nullptr);
}

kj::AutoCloseFd ChildProcess::take_stdout() {
  // KJ watches the descriptor it wraps (edge-triggered epoll) until the wrapper is gone.
  kj::AutoCloseFd copy(fcntl(stdout_fd_, F_DUPFD_CLOEXEC, 0));
  if (copy.get() >= 0) {
    stdout_ = nullptr;
    stdout_fd_ = -1;
  }
  return copy;
}

kj::Promise<ChildExit> ChildProcess::exited() {
  return status_.addBranch().then([this](int status) {
    deadline_ = nullptr;
    grace_ = nullptr;
    ChildExit exit;
    exit.timed_out = timed_out_;
    if (WIFEXITED(status))
      exit.code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      exit.code = 128 + WTERMSIG(status);
    return exit;
  });
}

namespace {

// What run_collect keeps of the output, and its bounds.
struct Collector {
  ChildProcess& child;
  std::size_t max_bytes;                    // kept of each stream
  std::optional<std::size_t> output_limit;  // printed on both streams together
  CollectedOutput result;
  std::size_t printed = 0;
  bool over_limit = false;

  void take(std::string& into, const char* data, std::size_t n) {
    printed += n;
    std::size_t room = max_bytes - std::min(max_bytes, into.size());
    if (output_limit) {
      const auto kept = result.out.size() + result.err.size();
      room = std::min(room, *output_limit - std::min(*output_limit, kept));
    }
    into.append(data, std::min(n, room));
    if (output_limit && printed > *output_limit && !over_limit) {
      over_limit = true;
      child.terminate();
    }
  }
};

// Reads to the end, dropping what lies past the bounds: a child that prints more is never left
// blocked on a full pipe, and run_collect ends when both streams have.
kj::Promise<void> read_bounded(kj::AsyncInputStream& stream, std::string& into, Collector& collector) {
  auto buffer = kj::heapArray<char>(16384);
  auto read = stream.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&stream, &into, &collector, buffer = kj::mv(buffer)](std::size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    collector.take(into, buffer.begin(), n);
    return read_bounded(stream, into, collector);
  });
}

}  // namespace

kj::Promise<CollectedOutput> run_collect(kj::LowLevelAsyncIoProvider& io, kj::UnixEventPort& events, kj::Timer& timer,
                                         const ChildSpec& spec, std::size_t max_bytes) {
  auto child = kj::heap<ChildProcess>(io, events, timer, spec);
  auto collector = kj::heap<Collector>(Collector{*child, max_bytes, spec.output_limit, {}});
  auto& result = collector->result;
  auto reading = kj::joinPromises(kj::arr(read_bounded(child->stdout_stream(), result.out, *collector),
                                          read_bounded(child->stderr_stream(), result.err, *collector)));
  auto& child_ref = *child;
  auto& collector_ref = *collector;
  return reading.then([&child_ref]() { return child_ref.exited(); })
      .then([&collector_ref](ChildExit exit) {
        exit.output_limit_exceeded = collector_ref.over_limit;
        collector_ref.result.exit = exit;
        return kj::mv(collector_ref.result);
      })
      .attach(kj::mv(child), kj::mv(collector));
}

void limit_as_compose_config(ChildSpec& spec) {
  spec.timeout = kComposeConfigTimeLimit;
  spec.memory_limit = kComposeConfigMemoryLimit;
  spec.output_limit = kComposeConfigOutputLimit;
}

}  // namespace pgod::worker
