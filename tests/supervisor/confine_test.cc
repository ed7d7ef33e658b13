// spawn_confined as a unit: what the child is at exec (its fds), and that a hostile user cannot
// freeze the parent by stopping the half-started child.
#include "confine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace pgod::supervisor {
namespace {

using namespace std::chrono_literals;

// A uid no test user has, and one per test process (ctest runs tests in parallel): kill(-1, …)
// as this uid reaches only the child of this test.
const uid_t kUid = 64000 + static_cast<uid_t>(getpid() % 1000);

Identity test_identity() { return {"uid-" + std::to_string(kUid), kUid, kUid, {kUid}, "/"}; }

TEST(ConfineTest, AChildStoppedBeforeExecCannotFreezeTheParent) {
  // A thread with the child's uid (raw setresuid changes only the calling thread) keeps
  // stopping every process of that uid, as the service's user could.
  std::atomic<bool> done{false};
  std::thread stopper([&done]() {
    if (syscall(SYS_setresuid, kUid, kUid, kUid) != 0) return;
    while (!done) kill(-1, SIGSTOP);
  });
  SpawnSpec spec;
  spec.program = "/bin/true";
  spec.argv = {"/bin/true"};
  spec.env = {"PATH=/bin"};
  spec.identity = test_identity();
  const auto start = std::chrono::steady_clock::now();
  auto pid = spawn_confined(spec);
  const auto took = std::chrono::steady_clock::now() - start;
  done = true;
  stopper.join();
  EXPECT_LT(took, 7s) << "spawn_confined gives up on a child that does not exec";
  if (pid) {
    // The stop landed after the exec: the program runs (stopped); clean it up.
    kill(*pid, SIGKILL);
    waitpid(*pid, nullptr, 0);
  } else {
    EXPECT_NE(pid.error().find("no exec within 5 s"), std::string::npos) << pid.error();
  }
}

TEST(ConfineTest, AFailedStepIsReportedByName) {
  SpawnSpec spec;
  spec.program = "/nonexistent/program";
  spec.argv = {"/nonexistent/program"};
  spec.identity = test_identity();
  auto pid = spawn_confined(spec);
  ASSERT_FALSE(pid.has_value());
  EXPECT_NE(pid.error().find("execve: No such file or directory"), std::string::npos) << pid.error();
}

std::string read_all(int fd) {
  std::string text;
  char buffer[256];
  for (ssize_t got; (got = read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<std::size_t>(got));
  return text;
}

// pgod --check reads a judge's stdout and stderr: they go where it says, the fds still to 3...
TEST(ConfineTest, StdoutAndStderrGoToTheGivenFdsAndTheOthersStillTo3) {
  int out[2], err[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  const std::string text = "on fd 3";
  auto settings = sealed_memfd("test", kj::arrayPtr(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
  ASSERT_TRUE(settings.has_value()) << settings.error();
  SpawnSpec spec;
  spec.program = "/bin/sh";
  spec.argv = {"/bin/sh", "-c", "echo out; echo err >&2; cat <&3"};
  spec.env = {"PATH=/bin"};
  spec.identity = test_identity();
  spec.fds = {settings->get()};
  spec.stdout_fd = out[1];
  spec.stderr_fd = err[1];
  auto pid = spawn_confined(spec);
  close(out[1]);
  close(err[1]);
  ASSERT_TRUE(pid.has_value()) << pid.error();
  EXPECT_EQ(read_all(out[0]), "out\non fd 3");
  EXPECT_EQ(read_all(err[0]), "err\n");
  int status = 0;
  ASSERT_EQ(waitpid(*pid, &status, 0), *pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(out[0]);
  close(err[0]);
}

}  // namespace
}  // namespace pgod::supervisor
