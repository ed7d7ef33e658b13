// The worker against a real docker engine: Debian's dockerd and docker-compose, an image made
// here and served by a loopback registry that wants a login. Containers are checked with
// `docker exec` and `docker ps`, never over the network.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "compose_programs.h"
#include "docker_env.h"
#include "git_fixture.h"
#include "worker_harness.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;
using rpc::ServiceState;
using rpc::Verb;


std::string compose(const std::string& extra = "") {
  return "services:\n  app:\n    image: " + docker_environment().image() + "\n    command: [\"sleep\", \"3600\"]\n" + extra;
}

class WorkerDockerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // Whatever the test left: the project's containers and network.
    for (const auto& id : docker_environment().containers(project)) docker_environment().docker({"rm", "-f", id});
    docker_environment().docker({"network", "rm", project + "_default"});
  }
  const std::string project = "pgode2e" + std::to_string(getpid());
};

TEST_F(WorkerDockerTest, LoginPullUpRedeployRefuseAndStop) {
  TempDir repos;
  GitUpstream upstream(repos.path());
  // The repository's .env tries to send compose to another daemon (docker-compose v1 reads a
  // .env beside the compose file). Two defences keep it from mattering: DOCKER_HOST is pinned
  // in the environment (which wins over .env), and compose runs the validated model from the
  // state directory, where there is no .env. Nothing below would come up otherwise.
  upstream.commit({{"compose.yaml", compose()}, {".env", "DOCKER_HOST=tcp://127.0.0.1:9\n"}});

  WorkerHarness worker(
      upstream.path(),
      [&](rpc::ServiceSettings::Builder s) {
        s.setName(project);
        auto registries = s.initRegistries(1);
        registries[0].setUser(docker_environment().user());
        registries[0].setToken(docker_environment().token());
        registries[0].setRegistry(docker_environment().registry());
      },
      /*standin=*/false);
  worker.start();
  ASSERT_TRUE(worker.wait_for([&] { return worker.state() != ServiceState::STARTING; }, 120s)) << worker.worker_log();
  ASSERT_EQ(worker.state(), ServiceState::OK) << worker.worker_log();

  // Up, with the image pulled through the login.
  auto ids = docker_environment().containers(project);
  ASSERT_EQ(ids.size(), 1u);
  auto hello = docker_environment().docker({"exec", ids[0], "echo", "hello from the container"});
  EXPECT_EQ(hello.out, "hello from the container\n");
  // Logged out again: the private DOCKER_CONFIG holds no credentials.
  std::ifstream config(worker.state_dir() + "/docker/config.json");
  std::stringstream config_text;
  config_text << config.rdbuf();
  EXPECT_EQ(config_text.str().find("\"auth\""), std::string::npos) << config_text.str();
  EXPECT_EQ(worker.worker_log().find(docker_environment().token()), std::string::npos);

  // ps through the worker: compose's real output.
  auto ps = worker.run(Verb::PS);
  EXPECT_EQ(ps.exit_status, 0u) << ps.err;
  EXPECT_NE(ps.out.find(compose_container_name(compose_major_under_test(), project, "app")), std::string::npos) << ps.out;

  // A compose change redeploys: a new container with the new environment.
  upstream.commit({{"compose.yaml", compose("    environment:\n      VERSION: \"2\"\n")}});
  auto pull = worker.run(Verb::GIT_PULL);
  ASSERT_EQ(pull.exit_status, 0u) << pull.err << worker.worker_log();
  auto redeployed = docker_environment().containers(project);
  ASSERT_EQ(redeployed.size(), 1u);
  EXPECT_NE(redeployed[0], ids[0]) << "down + up made a new container";
  EXPECT_EQ(docker_environment().docker({"exec", redeployed[0], "sh", "-c", "echo $VERSION"}).out, "2\n");

  // A privileged compose file is refused; the running container stays as it is.
  upstream.commit({{"compose.yaml", compose("    privileged: true\n")}});
  pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  EXPECT_EQ(docker_environment().containers(project), redeployed) << "the old container still runs";
  EXPECT_EQ(docker_environment().docker({"exec", redeployed[0], "echo", "alive"}).out, "alive\n");

  // The stop file brings it down and keeps it down.
  upstream.commit({{"compose.yaml", compose("    environment:\n      VERSION: \"2\"\n")}});
  std::ofstream(worker.stop_file()) << "";
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::STOPPED) << worker.worker_log();
  EXPECT_TRUE(docker_environment().containers(project).empty());
}

TEST_F(WorkerDockerTest, PullWithoutCredentialsFails) {
  // The same image, no registries configured: the registry refuses, proving login mattered.
  TempDir repos;
  GitUpstream upstream(repos.path());
  upstream.commit({{"compose.yaml", compose()}});
  WorkerHarness worker(upstream.path(), [&](rpc::ServiceSettings::Builder s) { s.setName(project); }, false);
  worker.start();
  ASSERT_TRUE(worker.wait_for([&] { return worker.state() != ServiceState::STARTING; }, 120s));
  // The image may be cached from the other test; remove it and pull explicitly.
  docker_environment().docker({"rmi", "-f", docker_environment().image()});
  auto pull = worker.run(Verb::PULL);
  EXPECT_NE(pull.exit_status, 0u);
  EXPECT_NE((pull.out + pull.err).find("no basic auth credentials"), std::string::npos) << pull.out << pull.err;
}

}  // namespace
}  // namespace pgod::test
