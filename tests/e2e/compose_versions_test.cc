// The worker under each compose program of this host, on a real engine: Compose v2 (the plugin,
// what the worker prefers) and docker-compose (v1 on Debian 12, v2's binary on Debian 13). Every
// verb keeps its exit status under both; a service deployed by v1 is taken over by v2 (the host
// upgraded) with one copy of each container, its volume and network kept.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
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

// Two services on a network of their own, one with a named volume, both writing a line to
// their logs: what v1 and v2 name differently.
std::string two_services(const std::string& image, const std::string& extra = "") {
  const std::string service = "    image: " + image +
                              "\n    command: [\"sh\", \"-c\", \"echo hello from $$HOSTNAME; exec sleep 3600\"]\n"
                              "    networks: [back]\n";
  return "services:\n  app:\n" + service + extra + "  db:\n" + service + "    volumes: [\"data:/data\"]\n" +
         "networks:\n  back: {}\nvolumes:\n  data: {}\n";
}

// PIDs of the processes whose command line holds every one of `words`.
std::vector<pid_t> processes_with(const std::vector<std::string>& words) {
  std::vector<pid_t> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_file(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (std::all_of(words.begin(), words.end(),
                    [&](const std::string& w) { return cmdline.find(w) != std::string::npos; }))
      found.push_back(std::stoi(name));
  }
  return found;
}

class ComposeVersionsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    auto& engine = docker_environment();
    for (const auto& id : all_containers()) engine.docker({"rm", "-f", id});
    engine.docker({"network", "rm", project + "_back"});
    engine.docker({"volume", "rm", project + "_data"});
  }
  // Every container of the project, running or not.
  std::vector<std::string> all_containers() const { return docker_environment().containers(project, true); }
  std::string inspect(const std::string& format, const std::string& id) const {
    return docker_environment().docker({"inspect", "-f", format, id}).out;
  }
  std::unique_ptr<WorkerHarness> worker_for(GitUpstream& upstream) {
    const auto& engine = docker_environment();
    return std::make_unique<WorkerHarness>(
        upstream.path(),
        [&](rpc::ServiceSettings::Builder s) {
          s.setName(project);
          auto registries = s.initRegistries(1);  // the image is in the loopback registry, behind a login
          registries[0].setUser(engine.user());
          registries[0].setToken(engine.token());
          registries[0].setRegistry(engine.registry());
        },
        /*standin=*/false);
  }

  const std::string project = "pgodver" + std::to_string(getpid());
};

class EveryVerbTest : public ComposeVersionsTest, public ::testing::WithParamInterface<ComposeProgram> {
 protected:
  // The worker's --compose for this parameter: v2 as the plugin, v1 as docker-compose.
  std::string program() const { return GetParam().major == 1 ? "standalone" : "plugin"; }

  // logs -f until the caller leaves: then compose's process is gone.
  void follow_logs_then_leave(WorkerHarness& worker) {
    {
      std::string out, err;
      auto request = worker.client().runRequest();
      request.setVerb(Verb::LOGS);
      auto args = request.initArgs(2);
      args.set(0, "-f");
      args.set(1, "db");
      request.setOutput(kj::heap<CollectingSink>(out, err));
      auto call = request.send();
      ASSERT_TRUE(worker.wait_for([&] { return out.find("hello from") != std::string::npos; }, 30s)) << out << err;
      ASSERT_FALSE(processes_with({project, "logs", "-f"}).empty()) << "compose follows the logs";
    }  // the call is dropped, as the gateway drops it when the SSH client goes away
    EXPECT_TRUE(worker.wait_for(
        [&] {
          return processes_with({project, "logs", "-f"}).empty();
        },
        20s))
        << "compose logs -f outlived its caller";
  }

  // The lifecycle verbs: each compose exit status passed through, and the state they leave.
  void lifecycle_verbs(WorkerHarness& worker) {
    EXPECT_EQ(worker.run(Verb::STOP, {"app"}).exit_status, 0u);
    EXPECT_EQ(docker_environment().containers(project).size(), 1u) << "app stopped, db runs";
    EXPECT_EQ(worker.run(Verb::START, {"app"}).exit_status, 0u);
    EXPECT_EQ(docker_environment().containers(project).size(), 2u);
    EXPECT_EQ(worker.run(Verb::RESTART).exit_status, 0u);
    EXPECT_EQ(worker.run(Verb::BUILD).exit_status, 0u) << "no service builds: nothing to do";
    EXPECT_EQ(worker.run(Verb::LOAD).exit_status, 0u);
    EXPECT_EQ(worker.run(Verb::GIT_HASH).exit_status, 0u);
    EXPECT_EQ(worker.run(Verb::DOWN).exit_status, 0u);
    EXPECT_TRUE(all_containers().empty()) << "down removes the containers";
    EXPECT_EQ(worker.run(Verb::UP).exit_status, 0u);
    ASSERT_EQ(docker_environment().containers(project).size(), 2u);
    EXPECT_NE(worker.run(Verb::UP, {"nosuchservice"}).exit_status, 0u) << "compose's own failure";
  }
};

TEST_P(EveryVerbTest, DeployRedeployRefuseLogsExecAndEveryVerbsExitStatus) {
  TempDir repos;
  GitUpstream upstream(repos.path());
  const auto image = docker_environment().image();
  upstream.commit({{"compose.yaml", two_services(image)}});
  auto worker = worker_for(upstream);
  worker->start({"--compose", program()});
  ASSERT_TRUE(worker->wait_for([&] { return worker->state() != ServiceState::STARTING; }, 120s))
      << worker->worker_log();
  ASSERT_EQ(worker->state(), ServiceState::OK) << worker->worker_log();
  ASSERT_NE(worker->worker_log().find(GetParam().major == 1 ? "with docker-compose" : "with docker compose"),
            std::string::npos)
      << worker->worker_log();

  // Deployed: two containers, named as this compose names them.
  const auto name = [&](const std::string& service) {
    return compose_container_name(GetParam().major, project, service);
  };
  auto ps = worker->run(Verb::PS);
  EXPECT_EQ(ps.exit_status, 0u) << ps.err;
  EXPECT_NE(ps.out.find(name("app")), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find(name("db")), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("Up"), std::string::npos) << ps.out;
  ASSERT_EQ(docker_environment().containers(project).size(), 2u);

  // exec: output and the command's own exit status, passed through.
  auto exec = worker->run(Verb::EXEC, {"app", "echo", "from exec"});
  EXPECT_EQ(exec.exit_status, 0u) << exec.err;
  EXPECT_EQ(exec.out, "from exec\n");
  exec = worker->run(Verb::EXEC, {"app", "sh", "-c", "exit 3"});
  EXPECT_EQ(exec.exit_status, 3u) << exec.err;
  EXPECT_EQ(worker->run(Verb::EXEC, {"--privileged", "app", "id"}).exit_status, 406u) << "refused before compose";
  EXPECT_NE(worker->run(Verb::EXEC, {"nosuchservice", "id"}).exit_status, 0u);

  // logs, and logs -f until the caller leaves.
  auto logs = worker->run(Verb::LOGS, {"app"});
  EXPECT_EQ(logs.exit_status, 0u) << logs.err;
  EXPECT_NE(logs.out.find("hello from"), std::string::npos) << logs.out;
  ASSERT_NO_FATAL_FAILURE(follow_logs_then_leave(*worker));

  ASSERT_NO_FATAL_FAILURE(lifecycle_verbs(*worker));

  // A change redeploys: new containers with the new environment.
  const auto before = docker_environment().containers(project);
  upstream.commit({{"compose.yaml", two_services(image, "    environment:\n      VERSION: \"2\"\n")}});
  auto pull = worker->run(Verb::GIT_PULL);
  ASSERT_EQ(pull.exit_status, 0u) << pull.err << worker->worker_log();
  const auto app = inspect("{{.Id}}", name("app"));
  EXPECT_EQ(docker_environment().docker({"exec", name("app"), "sh", "-c", "echo $VERSION"}).out, "2\n");
  EXPECT_EQ(std::count(before.begin(), before.end(), app.substr(0, app.size() - 1)), 0) << "a new container";

  // A refused file leaves the running containers as they are.
  const auto running = docker_environment().containers(project);
  upstream.commit({{"compose.yaml", two_services(image, "    privileged: true\n")}});
  pull = worker->run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u);
  EXPECT_EQ(worker->state(), ServiceState::BROKEN);
  EXPECT_EQ(docker_environment().containers(project), running);
  worker->stop();
}

INSTANTIATE_TEST_SUITE_P(Installed, EveryVerbTest, ::testing::ValuesIn(installed_compose_programs()),
                         [](const ::testing::TestParamInfo<ComposeProgram>& info) { return info.param.name; });

// The host upgrades from v1 to v2 under running containers: v1 named them proj_app_1, v2 names
// proj-app-1, and their config hashes differ. v2 finds v1's containers by their labels and
// recreates each once; the named volume (and what it holds) and the network stay.
TEST_F(ComposeVersionsTest, AServiceDeployedByV1IsTakenOverByV2WithOneCopyOfEachContainer) {
  const auto& programs = installed_compose_programs();
  const bool has_v1 = std::any_of(programs.begin(), programs.end(), [](const auto& p) { return p.major == 1; });
  if (debian_codename() == "bookworm") {
    ASSERT_TRUE(has_v1) << "Debian 12's docker-compose (v1) is missing";
  }
  if (!has_v1) GTEST_SKIP() << "this release ships no docker-compose v1: there is nothing to upgrade from";

  TempDir repos;
  GitUpstream upstream(repos.path());
  const auto image = docker_environment().image();
  upstream.commit({{"compose.yaml", two_services(image)}});
  auto worker = worker_for(upstream);
  worker->start({"--compose", "standalone"});
  ASSERT_TRUE(worker->wait_for([&] { return worker->state() == ServiceState::OK; }, 120s)) << worker->worker_log();
  ASSERT_EQ(all_containers().size(), 2u);
  const auto v1_db = project + "_db_1";
  ASSERT_EQ(docker_environment().docker({"exec", v1_db, "sh", "-c", "echo kept > /data/marker"}).exit_code, 0);
  const auto volume = inspect("{{.Name}} {{.CreatedAt}}", project + "_data");
  const auto network = inspect("{{.Id}}", project + "_back");
  ASSERT_FALSE(volume.empty());
  ASSERT_FALSE(network.empty());
  worker->stop();

  // The same service, its worker now running v2 (the containers ran on meanwhile).
  worker->start({"--compose", "plugin"});
  ASSERT_TRUE(worker->wait_for([&] { return worker->state() != ServiceState::STARTING; }, 120s))
      << worker->worker_log();
  ASSERT_EQ(worker->state(), ServiceState::OK) << worker->worker_log();
  auto ids = all_containers();
  ASSERT_EQ(ids.size(), 2u) << "one copy of each container, no orphan";
  std::vector<std::string> names;
  for (const auto& id : ids) names.push_back(inspect("{{.Name}}", id));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"/" + project + "-app-1\n", "/" + project + "-db-1\n"}));
  EXPECT_EQ(docker_environment().containers(project).size(), 2u) << "both run";
  EXPECT_EQ(inspect("{{.Name}} {{.CreatedAt}}", project + "_data"), volume) << "the volume is kept";
  EXPECT_EQ(inspect("{{.Id}}", project + "_back"), network) << "the network is kept";
  EXPECT_EQ(docker_environment()
                .docker({"exec", project + "-db-1", "sh", "-c", "read line < /data/marker && echo $line"})
                .out,
            "kept\n");

  // And v2 manages it from here: a redeploy, again one copy of each.
  upstream.commit({{"compose.yaml", two_services(image, "    environment:\n      VERSION: \"2\"\n")}});
  ASSERT_EQ(worker->run(Verb::GIT_PULL).exit_status, 0u) << worker->worker_log();
  EXPECT_EQ(all_containers().size(), 2u);
  EXPECT_EQ(docker_environment().docker({"exec", project + "-app-1", "sh", "-c", "echo $VERSION"}).out, "2\n");
  EXPECT_EQ(docker_environment()
                .docker({"exec", project + "-db-1", "sh", "-c", "read line < /data/marker && echo $line"})
                .out,
            "kept\n");
  worker->stop();
}

}  // namespace
}  // namespace pgod::test
