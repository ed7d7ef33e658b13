// `compose config` on a hostile compose file, with the real compose programs of this host and
// the limits the worker runs it under (kComposeConfig*Limit): YAML alias bombs end, each by the
// limit it runs into (time, memory or output), within the time limit and a margin, and leave no
// process behind; a normal file still normalises under the same limits. `config` needs no
// docker daemon.
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "child_process.h"
#include "compose.h"
#include "compose_programs.h"
#include "process.h"

namespace pgod::worker {
namespace {

using namespace std::chrono_literals;
using test::ComposeProgram;

// A YAML alias bomb: the first level is a list of `width` copies of `leaf`, each further level
// a list of `width` aliases of the one before, and the service holds the last.
std::string alias_bomb(int levels, int width, const std::string& leaf) {
  auto repeated = [width](const std::string& item) {
    std::string list = "[";
    for (int i = 0; i < width; ++i) list += (i ? "," : "") + item;
    return list + "]";
  };
  std::string yaml = "x-l0: &l0 " + repeated("\"" + leaf + "\"") + "\n";
  for (int level = 1; level < levels; ++level) {
    const auto name = "l" + std::to_string(level);
    yaml += "x-" + name + ": &" + name + " " + repeated("*l" + std::to_string(level - 1)) + "\n";
  }
  return yaml + "services:\n  web:\n    image: busybox\n    labels:\n      pgod.test: alias-bomb\n    x-bomb: *l" +
         std::to_string(levels - 1) + "\n";
}

// The TERM at the time limit, the KILL after its grace, and slack for a loaded host.
constexpr std::chrono::seconds kMostItMayTake = kComposeConfigTimeLimit + 5s + 15s;

// Whether any process (zombies aside) still runs with `text` in its command line.
bool any_process_mentions(const std::string& text) {
  std::error_code error;  // processes come and go while /proc is read
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    // The name may hold spaces and parentheses: the state follows the last ')'.
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) continue;
    const char state = line[close + 2];
    if (state == 'Z' || state == 'X') continue;
    std::ifstream cmdline(entry.path() / "cmdline");
    const std::string arguments((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    if (arguments.find(text) != std::string::npos) return true;
  }
  return false;
}

class ComposeConfigLimits : public ::testing::TestWithParam<ComposeProgram> {
 protected:
  static void SetUpTestSuite() { kj::UnixEventPort::captureChildExit(); }

  ComposeConfigLimits() : checkout_(std::filesystem::canonical(temp_.path()).string()) {
    auto settings = message_.initRoot<rpc::ServiceSettings>();
    settings.setName("web");
    settings.setHome(checkout_);
    settings.setCheckoutDir(checkout_);
  }
  ~ComposeConfigLimits() noexcept override = default;  // capnp's builder may throw; gtest's may not

  struct Run {
    CollectedOutput result;
    std::chrono::steady_clock::duration took{};
  };

  // `compose -p web -f compose.yaml config` in the checkout, as the worker runs it: its
  // environment and argv, through run_collect, with limit_as_compose_config. nullopt (and a
  // failure) when it is still running at kMostItMayTake; it is killed then.
  std::optional<Run> config(const std::string& compose_yaml) {
    temp_.write("compose.yaml", compose_yaml);
    ComposeSetup setup;
    setup.project = "web";
    setup.checkout_dir = checkout_;
    setup.compose_path = checkout_ + "/compose.yaml";
    setup.program = GetParam().argv;
    ChildSpec spec{compose_argv(setup, {"config"}),
                   compose_environment(message_.getRoot<rpc::ServiceSettings>().asReader(), checkout_ + "/.docker"),
                   checkout_, std::nullopt, std::nullopt};
    limit_as_compose_config(spec);

    auto context = kj::setupAsyncIo();
    auto& timer = context.provider->getTimer();
    const auto started = std::chrono::steady_clock::now();
    auto running = run_collect(*context.lowLevelProvider, context.unixEventPort, timer, spec)
                       .then([](CollectedOutput result) { return std::optional<CollectedOutput>(std::move(result)); })
                       .exclusiveJoin(timer.afterDelay(kMostItMayTake.count() * kj::SECONDS).then([]() {
                         return std::optional<CollectedOutput>();
                       }));
    auto result = running.wait(context.waitScope);
    const auto took = std::chrono::steady_clock::now() - started;
    if (!result) {
      ADD_FAILURE() << GetParam().name << ": config still ran after " << kMostItMayTake.count() << " s";
      return std::nullopt;
    }
    std::cout << "  " << GetParam().name << ": exit " << result->exit.code
              << (result->exit.timed_out ? ", timed out" : "")
              << (result->exit.output_limit_exceeded ? ", over the output limit" : "") << ", "
              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms, "
              << result->out.size() + result->err.size() << " bytes kept\n";
    return Run{std::move(*result), took};
  }

  // Nothing compose started may outlive the call: the docker CLI's plugin is its child, in its
  // process group. A killed process may linger as a zombie for a moment, which is dead.
  void expect_nothing_left() {
    bool left = true;
    for (int i = 0; i < 100 && (left = any_process_mentions(checkout_)); ++i) std::this_thread::sleep_for(20ms);
    EXPECT_FALSE(left) << "a process of " << GetParam().name << " survived";
  }

  test::TempDir temp_;
  const std::string checkout_;
  capnp::MallocMessageBuilder message_;
};

TEST_P(ComposeConfigLimits, ANormalFileStillNormalises) {
  const auto run = config("services:\n  web:\n    image: busybox:1.36\n    command: [sleep, infinity]\n");
  ASSERT_TRUE(run);
  EXPECT_EQ(run->result.exit.code, 0) << run->result.err;
  EXPECT_FALSE(run->result.exit.timed_out);
  EXPECT_FALSE(run->result.exit.output_limit_exceeded);
  EXPECT_NE(run->result.out.find("web:"), std::string::npos) << run->result.out;
  EXPECT_NE(run->result.out.find("busybox:1.36"), std::string::npos) << run->result.out;
}

// Nine levels of nine: 9^9 strings from 540 bytes. Compose v2 walks them on a core at a steady
// ~60 MB for over a minute, v1 grows by a few MB a second: the time limit stops both.
TEST_P(ComposeConfigLimits, ADeepAliasBombEndsAtTheTimeLimit) {
  const auto bomb = alias_bomb(9, 9, "lol");
  ASSERT_LT(bomb.size(), 700u) << bomb;
  const auto run = config(bomb);
  ASSERT_TRUE(run);
  EXPECT_NE(run->result.exit.code, 0);
  EXPECT_TRUE(run->result.exit.timed_out);
  EXPECT_GE(run->took, kComposeConfigTimeLimit);
  EXPECT_LE(run->result.out.size() + run->result.err.size(), kComposeConfigOutputLimit);
  expect_nothing_left();
}

// Five levels of ten over 3000-byte strings (30 KB): v2 makes each alias a copy and needs more
// than 4 GB; the memory limit stops it within seconds. v1 shares the strings and is only slow:
// the time limit stops it.
TEST_P(ComposeConfigLimits, AWideAliasBombEndsAtTheMemoryOrTheTimeLimit) {
  const auto run = config(alias_bomb(5, 10, std::string(3000, 'x')));
  ASSERT_TRUE(run);
  EXPECT_NE(run->result.exit.code, 0);
  if (GetParam().major >= 2) {
    EXPECT_FALSE(run->result.exit.timed_out) << "the memory limit did not stop it";
    // Go's words for a failed allocation: "runtime: out of memory", "runtime: cannot allocate
    // memory", or for a thread's stack "pthread_create failed".
    const auto& err = run->result.err;
    EXPECT_TRUE(err.find("fatal error: runtime: ") != std::string::npos ||
                err.find("pthread_create failed") != std::string::npos)
        << err.substr(0, 2000);
  }
  EXPECT_LE(run->took, kMostItMayTake);
  expect_nothing_left();
}

// Four levels of ten over 1000-byte strings (10 KB) normalise, within seconds, to 10 MB (v1)
// or 21 MB (v2): the output limit stops both, and what is kept stays within it.
TEST_P(ComposeConfigLimits, AnAliasBombThatNormalisesToHugeOutputEndsAtTheOutputLimit) {
  const auto run = config(alias_bomb(4, 10, std::string(1000, 'x')));
  ASSERT_TRUE(run);
  EXPECT_TRUE(run->result.exit.output_limit_exceeded) << run->result.err.substr(0, 2000);
  EXPECT_FALSE(run->result.exit.timed_out);
  EXPECT_LE(run->result.out.size() + run->result.err.size(), kComposeConfigOutputLimit);
  expect_nothing_left();
}

INSTANTIATE_TEST_SUITE_P(Installed, ComposeConfigLimits, ::testing::ValuesIn(test::installed_compose_programs()),
                         [](const ::testing::TestParamInfo<ComposeProgram>& info) { return info.param.name; });

// With no compose program the suite above has no instances and would pass without a test.
TEST(ComposeConfigLimitsHost, HasAComposeProgram) {
  ASSERT_FALSE(test::installed_compose_programs().empty()) << "no compose program: run deploy/install-deps.sh unit";
}

}  // namespace
}  // namespace pgod::worker
