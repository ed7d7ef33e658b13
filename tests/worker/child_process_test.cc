// The worker's child processes, with real programs: output, exit codes, stdin, time, output
// and memory limits, and that killing reaches the whole process group.
#include "child_process.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <thread>

#include "process.h"

namespace pgod::worker {
namespace {

using namespace std::chrono_literals;

const std::vector<std::string> kEnv = {"PATH=/usr/bin:/bin", "HOME=/tmp"};

class ChildProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { kj::UnixEventPort::captureChildExit(); }
  // Held by pointer: KJ's destructors may throw, which a gtest fixture's destructor may not.
  std::unique_ptr<kj::AsyncIoContext> context = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  kj::AsyncIoContext& io = *context;
  kj::LowLevelAsyncIoProvider& low() { return *io.lowLevelProvider; }

  // A call still running after a minute fails the test (its child is killed) rather than
  // hanging the suite: that is how a broken kill shows when a grandchild prints forever.
  CollectedOutput collect(ChildSpec spec) {
    auto& timer = io.provider->getTimer();
    return run_collect(low(), io.unixEventPort, timer, spec)
        .exclusiveJoin(timer.afterDelay(60 * kj::SECONDS).then([]() -> CollectedOutput {
          KJ_FAIL_REQUIRE("the child still runs after 60 s");
        }))
        .wait(io.waitScope);
  }
};

// A killed grandchild is reparented to PID 1, which may leave it a zombie for a while: dead.
bool process_exists(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, name, state;
  if (!(stat >> pid_field >> name >> state)) return false;
  return state != "Z" && state != "X";
}

TEST_F(ChildProcessTest, CollectsStdoutAndStderrApartWithExitCode) {
  const auto result = collect({{"sh", "-c", "echo out; echo err >&2; exit 3"}, kEnv, "/", std::nullopt, 10s});
  EXPECT_EQ(result.out, "out\n");
  EXPECT_EQ(result.err, "err\n");
  EXPECT_EQ(result.exit.code, 3);
  EXPECT_FALSE(result.exit.timed_out);
}

TEST_F(ChildProcessTest, RunsInTheGivenDirectoryWithOnlyTheGivenEnvironment) {
  test::TempDir dir;
  const auto result =
      collect({{"sh", "-c", "pwd; env | sort"}, {"PATH=/usr/bin:/bin", "ONLY=me"}, dir.path(), std::nullopt, 10s});
  EXPECT_EQ(result.out, dir.path() + "\nONLY=me\nPATH=/usr/bin:/bin\nPWD=" + dir.path() + "\n");
}

TEST_F(ChildProcessTest, WritesStdinThenClosesIt) {
  const auto result = collect({{"cat"}, kEnv, "/", std::string("token-on-stdin"), 10s});
  EXPECT_EQ(result.out, "token-on-stdin");
  EXPECT_EQ(result.exit.code, 0);
}

TEST_F(ChildProcessTest, MissingProgramIsAClearError) {
  try {
    collect({{"no-such-program-pgod"}, kEnv, "/", std::nullopt, 10s});
    FAIL() << "expected an exception";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("program not found in PATH"), std::string::npos);
  }
}

TEST_F(ChildProcessTest, SignalsAreNotBlockedInTheChild) {
  // KJ blocks the signals it captures; a child must not inherit that (docker relies on SIGTERM).
  const auto result = collect({{"sh", "-c", "grep SigBlk /proc/self/status"}, kEnv, "/", std::nullopt, 10s});
  EXPECT_EQ(result.out, "SigBlk:\t0000000000000000\n");
}

TEST_F(ChildProcessTest, TimeoutKillsTheWholeGroup) {
  test::TempDir dir;
  const auto pidfile = dir.path() + "/grandchild.pid";
  const auto started = std::chrono::steady_clock::now();
  // The grandchild ignores nothing and sleeps; both must be gone after the timeout.
  const auto result =
      collect({{"sh", "-c", "sleep 60 & echo $! > " + pidfile + "; wait"}, kEnv, "/", std::nullopt, 300ms});
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(result.exit.timed_out);
  EXPECT_EQ(result.exit.code, 128 + SIGTERM);
  EXPECT_LT(elapsed, 5s);
  pid_t grandchild = 0;
  std::ifstream(pidfile) >> grandchild;
  ASSERT_GT(grandchild, 0);
  for (int i = 0; i < 50 && process_exists(grandchild); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(process_exists(grandchild)) << "grandchild " << grandchild << " survived";
}

TEST_F(ChildProcessTest, TermIgnoredMeansKillAfterGrace) {
  const auto result =
      collect({{"sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"}, kEnv, "/", std::nullopt, 200ms});
  EXPECT_TRUE(result.exit.timed_out);
  EXPECT_EQ(result.exit.code, 128 + SIGKILL);
}

TEST_F(ChildProcessTest, PrintingPastTheOutputLimitStopsTheWholeGroup) {
  // `yes` runs in the background: were only the shell killed, it would hold the pipes open and
  // the call would last until the timeout.
  constexpr std::size_t kLimit = 1 << 20;
  ChildSpec spec{{"sh", "-c", "yes & wait"}, kEnv, "/", std::nullopt, 20s};
  spec.output_limit = kLimit;
  const auto started = std::chrono::steady_clock::now();
  const auto result = collect(spec);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_TRUE(result.exit.output_limit_exceeded);
  EXPECT_FALSE(result.exit.timed_out);
  EXPECT_EQ(result.exit.code, 128 + SIGTERM);
  EXPECT_LE(result.out.size() + result.err.size(), kLimit);
  EXPECT_GT(result.out.size(), kLimit / 2) << "what came before the limit is kept";
}

TEST_F(ChildProcessTest, TheOutputLimitCountsBothStreamsAndOnlyWhatIsPastIt) {
  ChildSpec exactly{{"sh", "-c", "head -c 600 /dev/zero; head -c 400 /dev/zero >&2"}, kEnv, "/", std::nullopt, 10s};
  exactly.output_limit = 1000;
  const auto within = collect(exactly);
  EXPECT_FALSE(within.exit.output_limit_exceeded);
  EXPECT_EQ(within.exit.code, 0);
  EXPECT_EQ(within.out.size(), 600u);
  EXPECT_EQ(within.err.size(), 400u);

  ChildSpec over = exactly;
  over.argv = {"sh", "-c", "head -c 600 /dev/zero; head -c 401 /dev/zero >&2"};
  const auto beyond = collect(over);
  EXPECT_TRUE(beyond.exit.output_limit_exceeded);
  EXPECT_EQ(beyond.out.size() + beyond.err.size(), 1000u);
}

TEST_F(ChildProcessTest, TheMemoryLimitIsTheDataLimitOfTheChildAndWhatItStarts) {
  ChildSpec spec{{"sh", "-c", "ulimit -S -d; ulimit -H -d; sh -c 'ulimit -d'"}, kEnv, "/", std::nullopt, 10s};
  spec.memory_limit = std::uint64_t{256} << 20;
  const auto result = collect(spec);
  EXPECT_EQ(result.out, "262144\n262144\n262144\n") << result.err;  // KiB, soft and hard, inherited
}

TEST_F(ChildProcessTest, AllocatingPastTheMemoryLimitFails) {
  // 256 MiB at once, under a 128 MiB limit: Python's allocation fails (MemoryError, exit 1)
  // before any of it is touched. Without the limit it succeeds (the control).
  ChildSpec spec{{"python3", "-c", "x = bytearray(256 * 1024 * 1024)"}, kEnv, "/", std::nullopt, 20s};
  spec.memory_limit = std::uint64_t{128} << 20;
  const auto result = collect(spec);
  EXPECT_EQ(result.exit.code, 1) << result.err;
  EXPECT_NE(result.err.find("MemoryError"), std::string::npos) << result.err;

  spec.memory_limit.reset();
  const auto control = collect(spec);
  EXPECT_EQ(control.exit.code, 0) << "the control: " << control.err;
}

TEST_F(ChildProcessTest, AChildWithinGenerousLimitsRunsAsWithout) {
  ChildSpec spec{
      {"python3", "-c", "import sys; x = bytearray(64 * 1024 * 1024); print('ran'); print('err', file=sys.stderr)"},
      kEnv,
      "/",
      std::nullopt,
      20s};
  spec.memory_limit = std::uint64_t{1} << 30;
  spec.output_limit = 1 << 20;
  const auto result = collect(spec);
  EXPECT_EQ(result.exit.code, 0) << result.err;
  EXPECT_EQ(result.out, "ran\n");
  EXPECT_EQ(result.err, "err\n");
  EXPECT_FALSE(result.exit.output_limit_exceeded);
  EXPECT_FALSE(result.exit.timed_out);
}

TEST_F(ChildProcessTest, AChildThatCannotStartIsAClearErrorAndLeavesNoZombie) {
  try {
    collect({{"true"}, kEnv, "/nonexistent-pgod-dir", std::nullopt, 10s});
    FAIL() << "expected an exception";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("chdir: No such file or directory"), std::string::npos)
        << e.getDescription().cStr();
  }
  // Reaped where it failed: no child of ours is left, running or not.
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(ChildProcessTest, DroppingTheProcessKillsTheGroupAndReapsIt) {
  test::TempDir dir;
  const auto pidfile = dir.path() + "/pid";
  pid_t child_pid = 0;
  {
    ChildProcess child(
        low(), io.unixEventPort, io.provider->getTimer(),
        {{"sh", "-c", "echo $$ > " + pidfile + "; echo ready; sleep 60"}, kEnv, "/", std::nullopt, std::nullopt});
    child_pid = child.pid();
    // Read "ready" so we know the shell runs, then drop it as a cancelled call would.
    char buffer[16];
    child.stdout_stream().tryRead(buffer, 6, sizeof buffer).wait(io.waitScope);
  }
  // The background reap needs the event loop to turn.
  for (int i = 0; i < 100 && process_exists(child_pid); ++i) {
    io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope);
  }
  EXPECT_FALSE(process_exists(child_pid)) << "killed and reaped (no zombie)";
}

TEST(FindProgram, UsesThePathFromTheGivenEnvironment) {
  EXPECT_EQ(find_program("sh", {"PATH=/nonexistent:/bin"}), "/bin/sh");
  EXPECT_EQ(find_program("sh", {"PATH=/nonexistent"}), std::nullopt);
  EXPECT_EQ(find_program("/bin/true", {}), "/bin/true");
}

}  // namespace
}  // namespace pgod::worker
