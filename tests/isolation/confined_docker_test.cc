// Item 3 on a real engine: under the worker's confinement (a test service user with its groups
// plus docker, no_new_privs, the real worker filter), the docker client and docker-compose
// still reach the daemon, run the way the worker runs them (worker/child_process, the worker's
// environment). The controls drop the docker group: then the daemon refuses, so a pass means
// the daemon was really reached through the group, under the filter.
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "compose.h"
#include "compose_programs.h"
#include "docker_env.h"
#include "pgod_harness.h"
#include "settings.capnp.h"
#include "worker_confinement.h"

namespace pgod::isolation {
namespace {

namespace fs = std::filesystem;

class ConfinedDockerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    (void)test::docker_environment();  // the engine, started by the program's environment if none answered
    fs::permissions(root.path(), fs::perms(0755));
    for (const auto& dir : {checkout, state}) {
      fs::create_directory(dir);
      ASSERT_EQ(chown(dir.c_str(), with_docker.uid, with_docker.gid), 0);
    }
    std::ofstream(checkout + "/compose.yaml") << "services:\n  web:\n    image: pgod-isolation:never-pulled\n";
    capnp::MallocMessageBuilder message;  // only while the environment is computed
    auto settings = message.initRoot<rpc::ServiceSettings>();
    settings.setHome(with_docker.home);
    environment = worker::compose_environment(settings.asReader(), state + "/docker");
  }

  // "<confinement>\nexit N\n<output>" of argv run by a confined child as `who`.
  std::string confined_run(const supervisor::Identity& who, const std::vector<std::string>& argv) {
    return run_as_worker({who, Filter::kInstalled, {}},
                         [&] { return own_confinement() + "\n" + run_like_the_worker(argv, environment, checkout); });
  }

  std::string confined_header() const { return "uid=" + std::to_string(with_docker.uid) + " seccomp=2 nnp=1\n"; }

  test::TempDir root;
  const std::string checkout = root.path() + "/checkout";
  const std::string state = root.path() + "/state";
  const supervisor::Identity with_docker = worker_identity(test::service_user_a().name);
  const supervisor::Identity without_docker = worker_identity(test::service_user_a().name, false);
  std::vector<std::string> environment;
};

TEST_F(ConfinedDockerTest, DockerVersionReachesTheDaemonUnderTheWorkerFilter) {
  const std::string said = confined_run(with_docker, {"docker", "version"});
  ASSERT_TRUE(said.starts_with(confined_header() + "exit 0\n")) << said;
  EXPECT_NE(said.find("Server:"), std::string::npos) << "the daemon answered\n" << said;

  const std::string control = confined_run(without_docker, {"docker", "version"});
  EXPECT_TRUE(control.starts_with(confined_header())) << control;
  EXPECT_FALSE(control.starts_with(confined_header() + "exit 0\n")) << "without the docker group\n" << control;
  EXPECT_NE(control.find("permission denied"), std::string::npos) << control;
}

TEST_F(ConfinedDockerTest, DockerComposeReachesTheDaemonUnderTheWorkerFilter) {
  // `ps` asks the daemon for the project's containers (there are none: nothing is created).
  worker::ComposeSetup setup;
  setup.project = "pgodisolation" + std::to_string(getpid());
  setup.checkout_dir = checkout;
  setup.compose_path = checkout + "/compose.yaml";
  setup.program = test::compose_under_test() == "plugin" ? std::vector<std::string>{"docker", "compose"}
                                                         : std::vector<std::string>{"docker-compose"};
  const auto argv = worker::compose_argv(setup, {"ps"});

  const std::string said = confined_run(with_docker, argv);
  ASSERT_TRUE(said.starts_with(confined_header() + "exit 0\n")) << said;

  const std::string control = confined_run(without_docker, argv);
  EXPECT_TRUE(control.starts_with(confined_header())) << control;
  EXPECT_FALSE(control.starts_with(confined_header() + "exit 0\n")) << "without the docker group\n" << control;
}

}  // namespace
}  // namespace pgod::isolation
