// Faults on a real engine (dockerd, Compose v2, the loopback registry): the
// repository vanishes and comes back, is force-pushed to an unrelated history, the service's
// repository (in its state directory) is garbled by root, an invalid compose file is pushed, and
// pgod gets SIGTERM.
//
// pgod runs one service and its real gateway; the service's status is read the way an operator
// reads it, `pgoctl host:svc//status` through the gateway, and `git pull` is asked for the same
// way. compose runs through a wrapper that records each call, so "no down, no up churn"
// is checked twice: no `down` recorded, and the very same container (ID, start time) running
// throughout.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "compose_programs.h"
#include "docker_env.h"
#include "fault_support.h"
#include "git_fixture.h"
#include "pgod_harness.h"

namespace pgod::test::faults {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string compose(const std::string& extra = "") {
  return "services:\n  app:\n    image: " + docker_environment().image() + "\n    command: [\"sleep\", \"3600\"]\n" +
         extra;
}

// The container as docker knows it: a restart or a re-creation changes this.
std::string identity(const std::string& id) {
  return docker_environment().docker({"inspect", "-f", "{{.Id}} {{.State.StartedAt}} {{.State.Running}}", id}).out;
}

class EngineFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = make_key(keys_.path(), "dev");
    // docker and docker-compose, recorded: the worker finds them first in its PATH, and they
    // run Debian's (`docker compose` or `docker-compose`, as PGOD_TEST_COMPOSE says).
    const auto bin = pgod_.root() + "/compose-bin";
    fs::create_directory(bin);
    fs::permissions(bin, fs::perms(0755));
    calls_ = bin + "/calls.log";
    std::ofstream(calls_).close();
    fs::permissions(calls_, fs::perms(0666));
    for (const std::string program : {"docker", "docker-compose"}) {
      std::ofstream(bin + "/" + program) << "#!/bin/sh\nprintf '%s\\n' \"" << program << " $*\" >> " << calls_
                                         << "\nexec /usr/bin/" << program << " \"$@\"\n";
      fs::permissions(bin + "/" + program, fs::perms(0755));
    }

    auto& upstream = pgod_.upstream(name_);
    upstream.commit({{"compose.yaml", compose()}, {"ssh/dev.pub", read_file(key_ + ".pub")}}, "deploy");
    const auto& engine = docker_environment();
    pgod_.write_config(PgodHarness::service_toml(
        name_, service_user_a().name, upstream.path(),
        "registries = [ \"" + engine.user() + ":" + engine.token() + "@" + engine.registry() + "\" ]\n"));
    pgod_.use_real_docker();
    ports_ = {free_loopback_port(), free_loopback_port()};
    auto args = ports_.pgod_args();
    args.insert(args.end(), {"--path-prefix", bin});
    pgod_.start(args);
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return docker_environment().containers(name_).size() == 1; }, 120s))
        << pgod_.log();
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return status().out.starts_with("state:       OK\n"); }, 60s))
        << status().out << status().err << pgod_.log();
    container_ = docker_environment().containers(name_).at(0);
    identity_ = identity(container_);
  }

  void TearDown() override {
    if (pgod_.pid() > 0) pgod_.stop(SIGTERM);
    for (const auto& id : docker_environment().containers(name_)) docker_environment().docker({"rm", "-f", id});
    docker_environment().docker({"network", "rm", name_ + "_default"});
  }
  // The image the workers pulled (its name holds this program's registry port): nothing else
  // uses it, and the engine outlives the test.
  static void TearDownTestSuite() { docker_environment().docker({"rmi", docker_environment().image()}); }

  ProcessResult ctl(const std::string& command) {
    return pgoctl(ports_.ssh, pgod_.root() + "/known_hosts", key_, name_ + "//" + command);
  }
  ProcessResult status() { return ctl("status"); }
  std::string compose_calls() const { return read_file(calls_); }
  std::string checkout() const { return pgod_.dir() + "/" + name_; }

  // The container that ran at the start still runs, untouched, and nothing brought it down.
  void expect_untouched(const std::string& when) {
    EXPECT_EQ(docker_environment().containers(name_), std::vector<std::string>{container_}) << when;
    EXPECT_EQ(identity(container_), identity_) << when << ": neither restarted nor re-created";
    EXPECT_EQ(docker_environment().docker({"exec", container_, "echo", "alive"}).out, "alive\n") << when;
    EXPECT_EQ(count(compose_calls(), " down"), 0u) << when << "\n" << compose_calls();
  }

  // pgod gets SIGTERM: it stops every worker and its gateway, and the containers keep running.
  // (The fault suite's own check; SupervisorDockerTest.ContainersOutlivePgod... covers it too.)
  void stop_pgod_and_expect_containers_running() {
    const pid_t worker = pgod_.worker_pid(name_);
    const pid_t gateway = gateway_pid(pgod_.log());
    ASSERT_GT(worker, 0);
    ASSERT_GT(gateway, 0);
    EXPECT_EQ(pgod_.stop(SIGTERM), 0) << pgod_.log();
    EXPECT_TRUE(has_exited(worker));
    EXPECT_TRUE(has_exited(gateway));
    EXPECT_EQ(processes_of(programs_dir() + "/pgod-worker"), std::vector<pid_t>{}) << "no worker left";
    EXPECT_EQ(processes_of(programs_dir() + "/pgod-gateway"), std::vector<pid_t>{}) << "no gateway left";
    expect_untouched("after SIGTERM to pgod");
  }

  const std::string name_ = "pgodfault" + std::to_string(getpid());
  TempDir keys_;
  std::string key_, calls_, container_, identity_;
  GatewayPorts ports_;
  PgodHarness pgod_;
};

// Fault 3. SupervisorDockerTest.ContainersOutlivePgodAndAServiceThatLeftTheConfigIsDownedForReal
// checks the same from its side; every test below ends with this check as well.
TEST_F(EngineFaultTest, SigtermToPgodLeavesNoWorkerAndTheContainersRunning) {
  stop_pgod_and_expect_containers_running();
}

// Fault 4a: the upstream repository is deleted, then restored.
TEST_F(EngineFaultTest, ADeletedUpstreamIsDiffWithTheReasonAndTrackingResumesWhenItIsBack) {
  auto& upstream = pgod_.upstream(name_);
  const std::string kept = pgod_.root() + "/kept.git";
  ASSERT_EQ(run_process({"/bin/cp", "-a", upstream.path(), kept}).exit_code, 0);
  fs::remove_all(upstream.path());
  // Each `git pull` fails with the reason; a fetch that keeps failing (three in a row) puts the
  // service in DIFF, with the reason in the status.
  for (int pull = 0; pull < 3; ++pull) {
    const auto pulled = ctl("git pull");
    EXPECT_EQ(pulled.exit_code, 1) << "pull " << pull << ": " << pulled.out << pulled.err;
    EXPECT_NE(pulled.err.find(upstream.path() + " does not exist"), std::string::npos)
        << "pull " << pull << ": " << pulled.err;
    EXPECT_TRUE(pulled.err.starts_with(pull < 2 ? "state:       OK\n" : "state:       DIFF\n")) << pulled.err;
  }
  const auto diff = status();
  EXPECT_EQ(diff.exit_code, 0) << diff.err;
  EXPECT_TRUE(diff.out.starts_with("state:       DIFF\n")) << diff.out;
  // (The URL itself is redacted: it may carry a token.)
  EXPECT_NE(diff.out.find("error:       fetching branch 'main' of [redacted] failed: " + upstream.path() +
                          " does not exist\n"),
            std::string::npos)
      << diff.out;
  expect_untouched("with the upstream gone");

  ASSERT_EQ(run_process({"/bin/cp", "-a", kept, upstream.path()}).exit_code, 0);
  const auto back = ctl("git pull");
  EXPECT_EQ(back.exit_code, 0) << back.out << back.err;
  EXPECT_TRUE(back.out.starts_with("state:       OK\n")) << back.out << back.err;
  // And it tracks again: a new commit is followed.
  const auto head = upstream.commit({{"README", "after the restore\n"}}, "after the restore");
  const auto followed = ctl("git pull");
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  EXPECT_NE(followed.out.find("commit:      " + head + "\n"), std::string::npos) << followed.out;
  expect_untouched("after the restore");
  stop_pgod_and_expect_containers_running();
}

// Fault 4b: upstream is force-pushed to a history that shares nothing with the old one (the
// compose file in it is the same, so the containers must stay as they are).
TEST_F(EngineFaultTest, AForcePushToAnUnrelatedHistoryIsFollowedWithoutTouchingTheContainers) {
  auto& upstream = pgod_.upstream(name_);
  const auto old_head = upstream.head();
  TempDir other;
  git({"-C", other.path(), "init", "-q", "-b", "main"});
  std::ofstream(other.path() + "/compose.yaml") << compose();
  fs::create_directory(other.path() + "/ssh");
  std::ofstream(other.path() + "/ssh/dev.pub") << read_file(key_ + ".pub");
  std::ofstream(other.path() + "/HISTORY") << "an unrelated history\n";
  git({"-C", other.path(), "add", "-A"});
  git({"-C", other.path(), "commit", "-q", "-m", "unrelated root"});
  git({"-C", other.path(), "push", "-q", "--force", upstream.path(), "main:main"});
  const auto new_head = upstream.head();
  ASSERT_NE(new_head, old_head);
  ASSERT_EQ(run_process({"/usr/bin/git", "-C", upstream.path(), "merge-base", old_head, new_head}).exit_code, 1)
      << "no common ancestor";

  const auto pulled = ctl("git pull");
  EXPECT_EQ(pulled.exit_code, 0) << pulled.out << pulled.err;
  EXPECT_TRUE(pulled.out.starts_with("state:       OK\n")) << pulled.out;
  EXPECT_NE(pulled.out.find("commit:      " + new_head + "\n"), std::string::npos) << pulled.out;
  EXPECT_EQ(read_file(checkout() + "/HISTORY"), "an unrelated history\n");
  EXPECT_NE(pgod_.log().find("upstream was force-pushed: checkout reset to it"), std::string::npos) << pgod_.log();
  expect_untouched("after the force-push");
  stop_pgod_and_expect_containers_running();
}

// Overwrites a file with random bytes of the same size, as root (owner and mode stay).
void garble(const fs::path& file) {
  const auto size = fs::file_size(file);
  std::mt19937 random(static_cast<unsigned>(size));
  std::string noise(size, '\0');
  for (auto& byte : noise) byte = static_cast<char>(random());
  std::ofstream(file, std::ios::binary | std::ios::trunc) << noise;
}

// Fault 4c: root garbles the service's repository (in its state directory, out of the checkout): HEAD, then every
// object, then the branch ref and the index, each repaired by the next `git pull`; then garbled while upstream is gone
// too, so the repair itself fails and shows in the status until upstream is back.
TEST_F(EngineFaultTest, AGarbledRepositoryIsRebuiltWithoutTouchingTheContainers) {
  auto& upstream = pgod_.upstream(name_);
  const fs::path git_dir = pgod_.dir() + "/.pgod/" + name_ + "/git";
  ASSERT_TRUE(fs::is_directory(git_dir)) << "the repository lives in the state directory";
  ASSERT_FALSE(fs::exists(checkout() + "/.git")) << "and not in the checkout";
  const auto compose_before = read_file(checkout() + "/compose.yaml");
  const auto repair = [&](const std::string& what) {
    const auto rebuilt = count(pgod_.log(), "the repository was broken and has been rebuilt");
    const auto pulled = ctl("git pull");
    EXPECT_EQ(pulled.exit_code, 0) << what << ": " << pulled.out << pulled.err;
    EXPECT_TRUE(pulled.out.starts_with("state:       OK\n")) << what << ": " << pulled.out << pulled.err;
    EXPECT_NE(pulled.out.find("commit:      " + upstream.head() + "\n"), std::string::npos) << what << pulled.out;
    EXPECT_EQ(count(pgod_.log(), "the repository was broken and has been rebuilt"), rebuilt + 1) << what << pgod_.log();
    EXPECT_EQ(read_file(checkout() + "/compose.yaml"), compose_before) << what;
    const auto fsck = run_process({"/usr/bin/git", "-c", "safe.directory=*", "--git-dir=" + git_dir.string(), "fsck",
                                   "--no-progress", "--no-dangling"});
    EXPECT_EQ(fsck.exit_code, 0) << what << ": " << fsck.out << fsck.err;
    expect_untouched("after " + what);
  };

  std::ofstream(git_dir / "HEAD", std::ios::trunc) << "not a ref at all\n";
  repair("a garbled HEAD");

  std::size_t objects = 0;
  for (const auto& entry : fs::recursive_directory_iterator(git_dir / "objects"))
    if (entry.is_regular_file()) {
      garble(entry.path());
      ++objects;
    }
  ASSERT_GT(objects, 0u);
  repair("every object garbled");

  for (const auto& file : {git_dir / "refs/heads/main", git_dir / "index"})
    if (fs::exists(file)) garble(file);
  repair("the branch and the index garbled");

  // Damaged while upstream is unreachable: nothing to rebuild from. The status says so.
  const std::string kept = pgod_.root() + "/kept.git";
  ASSERT_EQ(run_process({"/bin/cp", "-a", upstream.path(), kept}).exit_code, 0);
  fs::remove_all(upstream.path());
  std::ofstream(git_dir / "HEAD", std::ios::trunc) << "garbage\n";
  for (int pull = 0; pull < 3; ++pull) {
    const auto pulled = ctl("git pull");
    EXPECT_EQ(pulled.exit_code, 1) << pulled.out;
    EXPECT_NE(pulled.err.find("is damaged"), std::string::npos) << pulled.err;
  }
  const auto stuck = status();
  EXPECT_TRUE(stuck.out.starts_with("state:       DIFF\n")) << stuck.out;
  EXPECT_NE(stuck.out.find("is damaged"), std::string::npos) << stuck.out;
  expect_untouched("while damaged with upstream gone");
  ASSERT_EQ(run_process({"/bin/cp", "-a", kept, upstream.path()}).exit_code, 0);
  repair("upstream's return");
  stop_pgod_and_expect_containers_running();
}

// Fault 5: a compose file that is valid YAML but that docker-compose refuses (an option of the
// wrong type) is pushed. The running container stays; the service is BROKEN with compose's own
// words in the status until a good file comes.
TEST_F(EngineFaultTest, AComposeFileThatComposeRefusesLeavesTheContainersAndShowsBroken) {
  auto& upstream = pgod_.upstream(name_);
  upstream.commit({{"compose.yaml", compose("    environment: 5\n")}}, "a bad compose file");
  const auto pulled = ctl("git pull");
  EXPECT_EQ(pulled.exit_code, 1) << pulled.out << pulled.err;
  const auto broken = status();
  EXPECT_EQ(broken.exit_code, 0) << broken.err;
  EXPECT_TRUE(broken.out.starts_with("state:       BROKEN\n")) << broken.out;
  // Compose's own words: v1 exits 1 ("… contains an invalid type"), v2 15 ("… must be a mapping").
  // Judged in the staging tree: the checkout never moved to the bad commit.
  EXPECT_NE(broken.out.find("error:       commit "), std::string::npos) << broken.out;
  EXPECT_NE(broken.out.find(" refused (the checkout stays at "), std::string::npos) << broken.out;
  EXPECT_NE(broken.out.find("compose config failed (exit "), std::string::npos) << broken.out;
  EXPECT_NE(broken.out.find(compose_major_under_test() == 1 ? "services.app.environment contains an invalid type"
                                                            : "services.app.environment must be a mapping"),
            std::string::npos)
      << broken.out;
  // The next cycles change nothing.
  EXPECT_EQ(ctl("git pull").exit_code, 1);
  expect_untouched("with the bad compose file");

  upstream.commit({{"compose.yaml", compose()}}, "fixed");
  const auto fixed = ctl("git pull");
  EXPECT_EQ(fixed.exit_code, 0) << fixed.out << fixed.err;
  EXPECT_TRUE(fixed.out.starts_with("state:       OK\n")) << fixed.out;
  EXPECT_NE(fixed.out.find("error:       -\n"), std::string::npos) << fixed.out;
  expect_untouched("after the fix");
  stop_pgod_and_expect_containers_running();
}

}  // namespace
}  // namespace pgod::test::faults
