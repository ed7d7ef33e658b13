// pgod on a real engine: the worker confinement still lets docker, docker-compose and libgit2
// do their work while the dangerous calls fail; containers outlive pgod; a service that left
// the config has its containers really removed, by a one-shot worker running as nobody with the
// docker group.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <regex>

#include "docker_env.h"
#include "pgod_harness.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;

class SupervisorDockerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const auto& id : docker_environment().containers(name)) docker_environment().docker({"rm", "-f", id});
    docker_environment().docker({"network", "rm", name + "_default"});
  }
  std::string config() {
    auto& upstream = pgod.upstream(name);
    upstream.commit({{"compose.yaml", "services:\n  app:\n    image: " + docker_environment().image() +
                                          "\n    command: [\"sleep\", \"3600\"]\n"}});
    return PgodHarness::service_toml(name, service_user_a().name, upstream.path(),
                                     "registries = [ \"" + docker_environment().user() + ":" +
                                         docker_environment().token() + "@" + docker_environment().registry() +
                                         "\" ]\n");
  }

  const std::string name = "pgode2es" + std::to_string(getpid());
  PgodHarness pgod;
};

TEST_F(SupervisorDockerTest, InsideTheConfinementDangerousCallsFailAndDockerComposeAndGitWork) {
  pgod.use_real_docker();
  pgod.write_config(config());
  pgod.start({"--worker-program", programs_dir() + "/confinement-probe"});
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return pgod.log().find("PROBE done=1") != std::string::npos; }, 60s))
      << pgod.log();
  const auto log = pgod.log();
  auto probe = [&](const std::string& key) {
    std::smatch found;
    const std::regex line("PROBE " + key + "=([^\n]*)");
    return std::regex_search(log, found, line) ? found[1].str() : "(missing)";
  };
  EXPECT_EQ(probe("uid"), std::to_string(service_user_a().uid));
  for (const char* call : {"mount", "unshare", "setns", "ptrace", "bpf", "keyctl", "setuid0", "clone_newuser"})
    EXPECT_EQ(probe(call), "EPERM") << call << "\n" << log;
  EXPECT_EQ(probe("docker_version"), "exit-0") << "the docker group reaches the daemon under the filter";
  EXPECT_EQ(probe("compose_version"), "exit-0") << "Python, threads and subprocesses work under the filter";
  EXPECT_EQ(probe("git_clone"), "ok");
}

TEST_F(SupervisorDockerTest, ContainersOutlivePgodAndAServiceThatLeftTheConfigIsDownedForReal) {
  pgod.use_real_docker();
  pgod.write_config(config());
  pgod.start();
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return docker_environment().containers(name).size() == 1; }, 120s))
      << pgod.log();
  const auto id = docker_environment().containers(name).at(0);
  const pid_t worker = pgod.worker_pid(name);

  EXPECT_EQ(pgod.stop(SIGTERM), 0);
  EXPECT_NE(kill(worker, 0), 0) << "no worker left";
  EXPECT_EQ(docker_environment().containers(name), std::vector<std::string>{id}) << "the container kept running";
  EXPECT_EQ(docker_environment().docker({"exec", id, "echo", "still here"}).out, "still here\n");

  // Started again without the service: its directory is stale, so its project is brought down.
  pgod.write_config("");
  pgod.start();
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return !std::filesystem::exists(pgod.dir() + "/" + name); }, 120s))
      << pgod.log();
  EXPECT_TRUE(docker_environment().containers(name).empty()) << pgod.log();
  EXPECT_NE(docker_environment().docker({"network", "inspect", name + "_default"}).exit_code, 0)
      << "the network went too";
  EXPECT_EQ(pgod.stop(SIGTERM), 0);
}

}  // namespace
}  // namespace pgod::test
