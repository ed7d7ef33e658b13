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

// A worker for `name` against `repository` on the real engine, logged in to the registry;
// `shared_network`, when given, is its one allowed external network (pgo.toml's networks).
std::unique_ptr<WorkerHarness> real_worker(const std::string& repository, const std::string& name,
                                           const std::string& shared_network = "") {
  auto worker = std::make_unique<WorkerHarness>(
      repository,
      [&](rpc::ServiceSettings::Builder s) {
        s.setName(name);
        if (!shared_network.empty()) s.initNetworks(1).set(0, shared_network);
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
    // Whatever the test left: the projects' containers, volumes and networks.
    auto& engine = docker_environment();
    for (const auto& name : {project, project + "b"}) {
      for (const auto& id : engine.containers(name, true)) engine.docker({"rm", "-f", id});
      engine.docker({"network", "rm", name + "_default"});
    }
    engine.docker({"volume", "rm", project + "b_data"});
    engine.docker({"network", "rm", project + "shared"});
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
// Two services on one engine, B running for real: every way A's repository could reach B's
// objects (its image, volume, network, container name, or a name on the network they share) is
// refused before compose runs, and B's container, volume and network stay as they were.
TEST_F(WorkerDockerTest, OneServiceCannotReachAnothersImageVolumeNetworkOrNames) {
  const std::string project_b = project + "b";
  const std::string shared = project + "shared";
  auto& engine = docker_environment();
  ASSERT_EQ(engine.docker({"network", "create", shared}).exit_code, 0);
  const auto image_before = [&] {
    engine.docker({"login", "-u", engine.user(), "-p", engine.token(), engine.registry()});
    engine.docker({"pull", engine.image()});
    engine.docker({"logout", engine.registry()});
    return engine.docker({"image", "inspect", "-f", "{{.Id}}", engine.image()}).out;
  }();

  TempDir repos_b;
  GitUpstream upstream_b(repos_b.path());
  upstream_b.commit({{"compose.yaml", compose("    volumes:\n      - data:/data\n    networks: [default, shared]\n"
                                              "volumes:\n  data:\nnetworks:\n  shared:\n    external: true\n"
                                              "    name: " +
                                              shared + "\n")}});
  {
    // B deployed by its own worker (one harness per thread: its worker stops here, its
    // containers run on).
    auto b = real_worker(upstream_b.path(), project_b, shared);
    ASSERT_TRUE(b->wait_for([&] { return b->state() != ServiceState::STARTING; }, 120s)) << b->worker_log();
    ASSERT_EQ(b->state(), ServiceState::OK) << b->worker_log();
  }
  const auto b_ids = engine.containers(project_b);
  ASSERT_EQ(b_ids.size(), 1u);
  // project_b-app-1 under Compose v2, project_b_app_1 under v1.
  std::string b_container = engine.docker({"inspect", "-f", "{{.Name}}", b_ids[0]}).out;
  b_container = b_container.substr(1, b_container.size() - 2);
  ASSERT_EQ(engine.docker({"exec", b_container, "sh", "-c", "echo kept > /data/mark"}).exit_code, 0);
  const auto b_networks =
      engine.docker({"inspect", "-f", "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}", b_container}).out;

  const std::string on_shared = "networks:\n  shared:\n    external: true\n    name: " + shared + "\n";
  TempDir repos;
  GitUpstream upstream(repos.path());
  upstream.commit({{"compose.yaml", compose("    networks: [default, shared]\n" + on_shared)}});
  auto a = real_worker(upstream.path(), project, shared);
  ASSERT_TRUE(a->wait_for([&] { return a->state() != ServiceState::STARTING; }, 120s)) << a->worker_log();
  ASSERT_EQ(a->state(), ServiceState::OK) << a->worker_log();

  // A's build tagged as the image B runs.
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

  const struct {
    std::string what, compose_file, reason;
  } attempts[] = {
      {"B's volume",
       compose("    volumes:\n      - stolen:/data\nvolumes:\n  stolen:\n    name: " + project_b + "_data\n"),
       "volume names must start with"},
      {"B's network", compose("    networks: [theirs]\nnetworks:\n  theirs:\n    name: " + project_b + "_default\n"),
       "network names must start with"},
      {"B's container name", compose("    container_name: " + b_container + "\n"), "must start with"},
      {"B's service name as an alias on the shared network",
       compose("    networks:\n      default:\n      shared:\n        aliases: [app]\n" + on_shared),
       "must start with"},
      {"B's container name as a hostname on the shared network",
       compose("    hostname: " + b_container + "\n    networks: [default, shared]\n" + on_shared), "must start with"},
  };
  for (const auto& attempt : attempts) {
    upstream.commit({{"compose.yaml", attempt.compose_file}, {"Dockerfile", std::nullopt}});
    const auto pull = a->run(Verb::GIT_PULL);
    EXPECT_EQ(pull.exit_status, 1u) << attempt.what;
    auto status = a->client().statusRequest().send().wait(a->io().waitScope);
    const std::string error = status.getStatus().getLastError().cStr();
    EXPECT_NE(error.find(attempt.reason), std::string::npos) << attempt.what << ": " << error;
  }

  // B as it was: its container, its volume's content, its networks.
  EXPECT_EQ(engine.docker({"exec", b_container, "sh", "-c", "read line < /data/mark && echo $line"}).out, "kept\n");
  EXPECT_EQ(
      engine.docker({"inspect", "-f", "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}", b_container}).out,
      b_networks);
  const auto a_ids = engine.containers(project);
  ASSERT_EQ(a_ids.size(), 1u) << "A still runs its accepted container only";
  // Both compose services are named app: compose asks for the bare name as an alias on every
  // network, and the gate leaves it off the shared one, where it would be B's address too.
  const auto a_aliases =
      engine
          .docker({"inspect", "-f", "{{json (index .NetworkSettings.Networks \"" + shared + "\").Aliases}}", a_ids[0]})
          .out;
  EXPECT_EQ(a_aliases.find("\"app\""), std::string::npos) << a_aliases;
}

// The health gate on the real engine: a commit whose healthcheck fails, then one whose container
// exits at once, each goes back to the last good deploy (REVERTED, saying which container and
// which check), whose container runs the good model again; a fixed commit is deployed.
TEST_F(WorkerDockerTest, ADeployThatFailsItsHealthGateGoesBackToTheLastGoodOne) {
  TempDir repos;
  GitUpstream upstream(repos.path());
  const auto good = upstream.commit({{"compose.yaml", compose("    environment:\n      MODE: good\n")}});
  auto worker = real_worker(upstream.path(), project);
  ASSERT_TRUE(worker->wait_for([&] { return worker->state() != ServiceState::STARTING; }, 120s))
      << worker->worker_log();
  ASSERT_EQ(worker->state(), ServiceState::OK) << worker->worker_log();
  auto& engine = docker_environment();
  const auto mode = [&] {
    const auto ids = engine.containers(project);
    return ids.size() == 1 ? engine.docker({"exec", ids[0], "sh", "-c", "echo $MODE"}).out : std::string("?");
  };
  ASSERT_EQ(mode(), "good\n");
  const auto last_error = [&] {
    auto status = worker->client().statusRequest().send().wait(worker->io().waitScope);
    return std::string(status.getStatus().getLastError().cStr());
  };

  const struct {
    std::string what, extra, reason;
  } failures[] = {
      {"a failing healthcheck",
       "    environment:\n      MODE: unhealthy\n    healthcheck:\n      test: [\"CMD-SHELL\", \"echo no db; exit "
       "1\"]\n"
       "      interval: 1s\n      timeout: 2s\n      retries: 1\n",
       "is unhealthy: its healthcheck says: no db"},
      {"a container that exits at once",
       "    environment:\n      MODE: exits\n    entrypoint: [\"sh\", \"-c\", \"exit 3\"]\n", "exited with code 3"},
  };
  for (const auto& failure : failures) {
    const auto bad = upstream.commit({{"compose.yaml", compose(failure.extra)}});
    const auto pull = worker->run(Verb::GIT_PULL);
    EXPECT_EQ(pull.exit_status, 1u) << failure.what;
    EXPECT_EQ(worker->state(), ServiceState::REVERTED) << failure.what << "\n" << worker->worker_log();
    const auto error = last_error();
    EXPECT_NE(error.find("deploy of " + bad.substr(0, 12) + " failed its health gate"), std::string::npos) << error;
    EXPECT_NE(error.find(failure.reason), std::string::npos) << failure.what << ": " << error;
    EXPECT_NE(error.find("running " + good.substr(0, 12) + " again"), std::string::npos) << error;
    EXPECT_EQ(mode(), "good\n") << failure.what << ": the good model runs again";
    // By the image's digest: a tag moved since would not matter.
    const auto ids = engine.containers(project);
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_NE(engine.docker({"inspect", "-f", "{{.Config.Image}}", ids[0]}).out.find("@sha256:"), std::string::npos);
    EXPECT_EQ(worker->run(Verb::GIT_HASH).out, good + "\n");
  }

  upstream.commit({{"compose.yaml", compose("    environment:\n      MODE: fixed\n")}});
  const auto fixed = worker->run(Verb::GIT_PULL);
  EXPECT_EQ(fixed.exit_status, 0u) << fixed.out << fixed.err;
  EXPECT_EQ(worker->state(), ServiceState::OK) << last_error();
  EXPECT_EQ(mode(), "fixed\n");
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
