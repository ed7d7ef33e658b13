#include "confined_child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <utility>

#include "confinement.h"

namespace pgod::gateway::test {
namespace {

void write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone: nobody to tell
    done += static_cast<std::size_t>(n);
  }
}

// The child's side. Never returns, not even by an exception (into the child's copy of gtest):
// _exit only, so that no atexit handler and no LeakSanitizer pass (which would fork a tracer,
// refused by the filter) runs in the child.
[[noreturn]] void child(const std::function<std::string()>& body, int report) {
  alarm(30);  // a hung call fails the test (killed by SIGALRM) instead of hanging it
  // SIGSYS dumps core by default; neither a core file nor a core handler is wanted.
  const rlimit no_core{0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    write_all(report, "set-up failed: no core limit: " + outcome(-1));
    _exit(0);
  }
  std::string said;
  try {
    said = body();
  } catch (const std::exception& error) {
    said = std::string("threw: ") + error.what();
  } catch (...) {
    said = "threw";
  }
  write_all(report, said);
  _exit(0);
}

}  // namespace

std::string outcome(long rc) {
  const int error = errno;
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : "errno " + std::to_string(error);
}

StartedChild start_child(const std::function<std::string()>& body) {
  StartedChild started;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    started.failure = "pipe2: " + outcome(-1);
    return started;
  }
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  const pid_t pid = fork();
  if (pid < 0) {
    started.failure = "fork: " + outcome(-1);
    return started;
  }
  if (pid == 0) {
    read_end.reset();
    child(body, write_end.get());
  }
  started.pid = pid;
  started.report = std::move(read_end);
  return started;
}

std::string wait_child(StartedChild& started) {
  if (started.pid < 0) return started.failure;
  std::string report;
  char buffer[512];
  for (;;) {
    const ssize_t n = read(started.report.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    report.append(buffer, static_cast<std::size_t>(n));
  }
  started.report.reset();
  int status = 0;
  while (waitpid(started.pid, &status, 0) < 0) {
    if (errno != EINTR) return "waitpid: " + outcome(-1);
  }
  started.pid = -1;
  if (WIFSIGNALED(status)) return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "exit " + std::to_string(WEXITSTATUS(status)) + (report.empty() ? "" : ": " + report);
  return report;
}

std::string run_child(const std::function<std::string()>& body) {
  StartedChild started = start_child(body);
  return wait_child(started);
}

std::string install_filter() {
  auto confined = install_gateway_filter();
  return confined ? "" : confined.error();
}

std::string confined(const std::function<std::string()>& call) {
  return run_child([&call] {
    if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
    return call();
  });
}

std::string unconfined(const std::function<std::string()>& call) { return run_child(call); }

}  // namespace pgod::gateway::test
