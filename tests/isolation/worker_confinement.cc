#include "worker_confinement.h"

#include <fcntl.h>
#include <grp.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <sstream>
#include <stdexcept>

#include "child_process.h"
#include "process.h"
#include "seccomp_filter.h"
#include "unique_fd.h"

namespace pgod::isolation {
namespace {

std::string errno_name(int error) {
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : "errno " + std::to_string(error);
}

void write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone: nobody to tell
    done += static_cast<std::size_t>(n);
  }
}

std::string read_all(int fd) {
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

// Built once, in the parent, as the supervisor builds it before forking.
const supervisor::SeccompProgram& worker_filter() {
  static const supervisor::SeccompProgram program = [] {
    auto built = supervisor::build_worker_filter();
    if (!built) throw std::runtime_error("build_worker_filter: " + built.error());
    return *built;
  }();
  return program;
}

// The drop, in confine.cc's order; "" or the step that failed.
std::string become(const ChildSpec& spec) {
  if (spec.before_drop) {
    if (auto failed = spec.before_drop(); !failed.empty()) return "before the drop: " + failed;
  }
  for (int capability = 0; capability <= 63; ++capability) {
    if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;
      return "PR_CAPBSET_DROP: " + errno_name(errno);
    }
  }
  const auto& id = spec.identity;
  if (setgroups(id.groups.size(), id.groups.data()) != 0) return "setgroups: " + errno_name(errno);
  if (setresgid(id.gid, id.gid, id.gid) != 0) return "setresgid: " + errno_name(errno);
  if (setresuid(id.uid, id.uid, id.uid) != 0) return "setresuid: " + errno_name(errno);
  // What pgod hands the worker (supervisor.cc, child_spec): HOME from the user database.
  if (setenv("HOME", id.home.c_str(), 1) != 0 || setenv("USER", id.user.c_str(), 1) != 0)
    return "setenv: " + errno_name(errno);
  umask(022);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return "PR_SET_NO_NEW_PRIVS: " + errno_name(errno);
  if (spec.filter == Filter::kInstalled) {
    if (const int rc = supervisor::install_seccomp_program(worker_filter()); rc != 0)
      return "install_seccomp_program: " + errno_name(-rc);
  }
  return "";
}

// Never returns, not even by an exception (into the child's copy of gtest): _exit only, so
// that no atexit handler and no LeakSanitizer pass (ptrace, which the filter refuses) runs.
[[noreturn]] void child(const ChildSpec& spec, const std::function<std::string()>& body, int report) {
  alarm(120);  // a hung clone or compose fails the test (SIGALRM) instead of hanging it
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  std::string said;
  try {
    const std::string failed = become(spec);
    said = failed.empty() ? body() : "set-up failed: " + failed;
  } catch (const std::exception& error) {
    said = std::string("threw: ") + error.what();
  } catch (...) {
    said = "threw";
  }
  write_all(report, said);
  _exit(0);
}

}  // namespace

supervisor::Identity worker_identity(const std::string& user, bool with_docker_group) {
  std::string note;
  auto identity = supervisor::lookup_user(user, with_docker_group, &note);
  if (!identity) throw std::runtime_error("lookup_user " + user + ": " + identity.error());
  return *identity;
}

std::string run_as_worker(const ChildSpec& spec, const std::function<std::string()>& body) {
  (void)worker_filter();  // in the parent, before fork
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return "pipe2: " + errno_name(errno);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  const pid_t pid = fork();
  if (pid < 0) return "fork: " + errno_name(errno);
  if (pid == 0) {
    read_end.reset();
    child(spec, body, write_end.get());
  }
  write_end.reset();
  const std::string report = read_all(read_end.get());
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "exit " + std::to_string(WEXITSTATUS(status)) + (report.empty() ? "" : ": " + report);
  return report;
}

std::string own_confinement() {
  std::istringstream status(test::read_file("/proc/self/status"));
  std::string uid, seccomp, nnp;
  for (std::string line; std::getline(status, line);) {
    std::istringstream fields(line);
    std::string key, value;
    fields >> key >> value;
    if (key == "Uid:") uid = value;
    if (key == "Seccomp:") seccomp = value;
    if (key == "NoNewPrivs:") nnp = value;
  }
  return "uid=" + uid + " seccomp=" + seccomp + " nnp=" + nnp;
}

std::string run_like_the_worker(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                const std::string& cwd) {
  // A child of its own event loop: the test process has none at fork time (a KJ event loop does
  // not survive a fork without exec).
  kj::UnixEventPort::captureChildExit();
  auto io = kj::setupAsyncIo();
  worker::ChildSpec spec;
  spec.argv = argv;
  spec.env = env;
  spec.cwd = cwd;
  spec.timeout = std::chrono::minutes(1);
  std::string said;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 auto& timer = io.provider->getTimer();
                 auto collected =
                     worker::run_collect(*io.lowLevelProvider, io.unixEventPort, timer, spec).wait(io.waitScope);
                 said = "exit " + std::to_string(collected.exit.code) + "\n" + collected.out + collected.err;
               })) {
    said = std::string("threw: ") + exception->getDescription().cStr();
  }
  return said;
}

}  // namespace pgod::isolation
