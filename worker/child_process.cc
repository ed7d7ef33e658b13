#include "child_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "safe_files.h"
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

// posix_spawn's attribute and file-action objects, destroyed on every path.
struct SpawnAttributes {
  posix_spawnattr_t value;
  SpawnAttributes() { KJ_REQUIRE(posix_spawnattr_init(&value) == 0); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&value); }
};
struct SpawnActions {
  posix_spawn_file_actions_t value;
  SpawnActions() { KJ_REQUIRE(posix_spawn_file_actions_init(&value) == 0); }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&value); }
};

void check_spawn(int rc, const char* what) {
  if (rc != 0) fail(fmt::format("{}: {}", what, std::strerror(rc)));
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
  Pipe in = make_pipe();

  SpawnActions actions;
  check_spawn(posix_spawn_file_actions_adddup2(&actions.value, in.read_end.get(), 0), "adddup2(stdin)");
  check_spawn(posix_spawn_file_actions_adddup2(&actions.value, out.write_end.get(), 1), "adddup2(stdout)");
  check_spawn(posix_spawn_file_actions_adddup2(&actions.value, err.write_end.get(), 2), "adddup2(stderr)");
  if (!spec.cwd.empty())
    check_spawn(posix_spawn_file_actions_addchdir_np(&actions.value, spec.cwd.c_str()), "addchdir");

  // Its own process group, so one kill reaches everything it starts; a clean signal state,
  // because KJ blocks the signals it captures and the mask would otherwise be inherited.
  SpawnAttributes attributes;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  check_spawn(posix_spawnattr_setflags(&attributes.value,
                                       POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
              "setflags");
  check_spawn(posix_spawnattr_setpgroup(&attributes.value, 0), "setpgroup");
  check_spawn(posix_spawnattr_setsigmask(&attributes.value, &none), "setsigmask");
  check_spawn(posix_spawnattr_setsigdefault(&attributes.value, &all), "setsigdefault");

  std::vector<char*> argv;
  for (const auto& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& entry : spec.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, program->c_str(), &actions.value, &attributes.value, argv.data(), envp.data());
  if (rc != 0) fail(fmt::format("cannot start {} in {}: {}", *program, spec.cwd, std::strerror(rc)));
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
    ssize_t written;
    do {
      written = write(in.write_end.get(), text.data(), text.size());
    } while (written < 0 && errno == EINTR);
  }
  in.write_end.reset();

  const auto flags = kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC;
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
  if (kill(-pid_, signal) != 0 && errno != ESRCH) spdlog::warn("kill({}, {}) failed: {}", -pid_, signal, std::strerror(errno));
}

void ChildProcess::terminate() {
  kill_group(SIGTERM);
  grace_ = timer_.afterDelay(kKillGrace).then([this]() { kill_group(SIGKILL); }).eagerlyEvaluate(nullptr);
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

kj::Promise<void> read_bounded(kj::AsyncInputStream& stream, std::string& into, std::size_t max_bytes) {
  auto buffer = kj::heapArray<char>(16384);
  auto read = stream.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&stream, &into, max_bytes, buffer = kj::mv(buffer)](std::size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    if (into.size() < max_bytes) into.append(buffer.begin(), std::min(n, max_bytes - into.size()));
    return read_bounded(stream, into, max_bytes);
  });
}

}  // namespace

kj::Promise<CollectedOutput> run_collect(kj::LowLevelAsyncIoProvider& io, kj::UnixEventPort& events, kj::Timer& timer,
                                         const ChildSpec& spec, std::size_t max_bytes) {
  auto child = kj::heap<ChildProcess>(io, events, timer, spec);
  auto result = kj::heap<CollectedOutput>();
  auto reading = kj::joinPromises(kj::arr(read_bounded(child->stdout_stream(), result->out, max_bytes),
                                          read_bounded(child->stderr_stream(), result->err, max_bytes)));
  auto& child_ref = *child;
  return reading.then([&child_ref]() { return child_ref.exited(); })
      .then([result = kj::mv(result)](ChildExit exit) mutable {
        result->exit = exit;
        return kj::mv(*result);
      })
      .attach(kj::mv(child));
}

}  // namespace pgod::worker
