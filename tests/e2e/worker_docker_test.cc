// The worker against a real docker engine: Debian's dockerd and docker-compose, an image made
// here and served by a loopback registry that wants a login. Containers are checked with
// `docker exec` and `docker ps`, never over the network.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

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
  return "services:\n  app:\n    image: " + docker_environment().image() + "\n    command: [\"sleep\", \"3600\"]\n" +
         extra;
}

// A worker for `name` against `repository` on the real engine, logged in to the registry.
std::unique_ptr<WorkerHarness> real_worker(const std::string& repository, const std::string& name) {
  auto worker = std::make_unique<WorkerHarness>(
      repository,
      [&](rpc::ServiceSettings::Builder s) {
        s.setName(name);
        auto registries = s.initRegistries(1);
        registries[0].setUser(docker_environment().user());
        registries[0].setToken(docker_environment().token());
        registries[0].setRegistry(docker_environment().registry());
      },
      /*standin=*/false);
  worker->start();
  return worker;
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

  auto started = real_worker(upstream.path(), project);
  WorkerHarness& worker = *started;
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
  EXPECT_NE(ps.out.find(compose_container_name(compose_major_under_test(), project, "app")), std::string::npos)
      << ps.out;

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

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A commit that turns a bound directory into a symlink to / is judged in the staging tree and
// never reaches the checkout: when the container restarts (restart: always, a dockerd restart),
// dockerd mounts the same directory again, not the host's root. The repository itself is out of
// the checkout, where no container can write core.worktree into it.
TEST_F(WorkerDockerTest, ASymlinkCommitIsJudgedBeforeTheCheckoutMoves) {
  TempDir repos;
  GitUpstream upstream(repos.path());
  upstream.commit({{"compose.yaml", compose("    restart: always\n    volumes:\n      - ./data:/data\n")},
                   {"data/marker", "inside the checkout\n"}});
  auto worker = real_worker(upstream.path(), project);
  ASSERT_TRUE(worker->wait_for([&] { return worker->state() != ServiceState::STARTING; }, 120s))
      << worker->worker_log();
  ASSERT_EQ(worker->state(), ServiceState::OK) << worker->worker_log();
  const auto ids = docker_environment().containers(project);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(worker->checkout_dir() + "/.git"));
  EXPECT_TRUE(std::filesystem::is_directory(worker->state_dir() + "/git"));
  const std::string before = worker->run(Verb::GIT_HASH).out;

  upstream.commit_symlink("data", "/");
  const auto pull = worker->run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u) << pull.out << pull.err;
  EXPECT_EQ(worker->state(), ServiceState::BROKEN);
  auto status = worker->client().statusRequest().send().wait(worker->io().waitScope);
  const std::string error = status.getStatus().getLastError().cStr();
  EXPECT_NE(error.find("refused (the checkout stays at"), std::string::npos) << error;
  EXPECT_NE(error.find("a system directory"), std::string::npos) << error;
  EXPECT_EQ(worker->run(Verb::GIT_HASH).out, before) << "HEAD did not move";
  EXPECT_FALSE(std::filesystem::is_symlink(worker->checkout_dir() + "/data"));
  EXPECT_EQ(read_text(worker->checkout_dir() + "/data/marker"), "inside the checkout\n");

  EXPECT_EQ(docker_environment().docker({"restart", ids[0]}).exit_code, 0);
  // The image has a shell and little else: its builtins read the mount.
  EXPECT_EQ(docker_environment().docker({"exec", ids[0], "sh", "-c", "read line < /data/marker; echo \"$line\""}).out,
            "inside the checkout\n");
  EXPECT_NE(docker_environment().docker({"exec", ids[0], "sh", "-c", "test -e /data/etc/passwd"}).exit_code, 0)
      << "the host's root is mounted";
  // load judges the tracked head (the refused commit) without deploying it.
  const auto load = worker->run(Verb::LOAD);
  EXPECT_EQ(load.exit_status, 1u);
  EXPECT_NE(load.err.find("a system directory"), std::string::npos) << load.err;

  // The same symlink with a compose file that no longer binds data/ (and asks for no down):
  // the running container still does, and would mount / at its next start. Refused too.
  upstream.commit({{"compose.yaml", compose("x-pgo:\n  reload: false\n")}});
  const auto again = worker->run(Verb::GIT_PULL);
  EXPECT_EQ(again.exit_status, 1u) << again.out << again.err;
  EXPECT_NE(again.err.find("the model the containers run would be refused in this commit"), std::string::npos)
      << again.err;
  EXPECT_FALSE(std::filesystem::is_symlink(worker->checkout_dir() + "/data"));
  EXPECT_EQ(worker->run(Verb::GIT_HASH).out, before);
}

// Two projects on one engine: a service's build can never name (and so replace) the image
// another project runs, nor its volumes. Refused before anything is built; the other project's
// image, container and volume are unchanged. (B runs as plain docker objects under its project
// name: one worker per test process.)
TEST_F(WorkerDockerTest, OneServiceCannotReplaceAnothersImageOrVolume) {
  const std::string project_b = project + "b";
  auto& engine = docker_environment();
  ASSERT_EQ(engine.docker({"login", "-u", engine.user(), "-p", engine.token(), engine.registry()}).exit_code, 0);
  ASSERT_EQ(engine.docker({"pull", engine.image()}).exit_code, 0);
  engine.docker({"logout", engine.registry()});
  ASSERT_EQ(engine.docker({"volume", "create", project_b + "_data"}).exit_code, 0);
  ASSERT_EQ(engine
                .docker({"run", "-d", "--name", project_b + "-app-1", "-v", project_b + "_data:/data", engine.image(),
                         "sleep", "3600"})
                .exit_code,
            0);
  const auto image_before = engine.docker({"image", "inspect", "-f", "{{.Id}}", engine.image()}).out;

  TempDir repos;
  GitUpstream upstream(repos.path());
  upstream.commit({{"compose.yaml", compose()}});
  auto a = real_worker(upstream.path(), project);
  ASSERT_TRUE(a->wait_for([&] { return a->state() != ServiceState::STARTING; }, 120s)) << a->worker_log();
  ASSERT_EQ(a->state(), ServiceState::OK) << a->worker_log();
  upstream.commit({{"compose.yaml", "services:\n  app:\n    image: " + engine.image() +
                                        "\n    build: .\n    command: [\"sleep\", \"3600\"]\n"},
                   {"Dockerfile", "FROM " + engine.image() + "\nRUN touch /hijacked\n"}});
  auto refused = a->run(Verb::GIT_PULL);
  EXPECT_EQ(refused.exit_status, 1u);
  EXPECT_NE(refused.err.find("a built image must be named"), std::string::npos) << refused.err;
  // build runs on the checkout, which still holds the accepted file (nothing to build).
  EXPECT_EQ(a->run(Verb::BUILD).exit_status, 0u);
  EXPECT_EQ(a->run(Verb::LOAD).exit_status, 1u) << "load judges the tracked head: the refused commit";
  EXPECT_FALSE(std::filesystem::exists(a->checkout_dir() + "/Dockerfile"));
  EXPECT_EQ(engine.docker({"image", "inspect", "-f", "{{.Id}}", engine.image()}).out, image_before);

  // B's volume, named under B's project, is not A's to name.
  upstream.commit({{"compose.yaml", compose("    volumes:\n      - stolen:/data\nvolumes:\n  stolen:\n    name: " +
                                            project_b + "_data\n")},
                   {"Dockerfile", std::nullopt}});
  const auto pull = a->run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u);
  auto status = a->client().statusRequest().send().wait(a->io().waitScope);
  EXPECT_NE(std::string(status.getStatus().getLastError().cStr()).find("volume names must start with"),
            std::string::npos);
  EXPECT_EQ(engine.docker({"exec", project_b + "-app-1", "echo", "alive"}).out, "alive\n");
  engine.docker({"rm", "-f", project_b + "-app-1"});
  engine.docker({"volume", "rm", project_b + "_data"});
}

TEST_F(WorkerDockerTest, PullWithoutCredentialsFails) {
  // The same image, no registries configured: the registry refuses, proving login mattered.
  TempDir repos;
  GitUpstream upstream(repos.path());
  upstream.commit({{"compose.yaml", compose()}});
  WorkerHarness worker(
      upstream.path(), [&](rpc::ServiceSettings::Builder s) { s.setName(project); }, false);
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
