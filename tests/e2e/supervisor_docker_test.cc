// pgod on a real engine: the worker confinement still lets docker (through the docker gate),
// docker-compose and libgit2 do their work while the dangerous calls fail and dockerd's own
// socket stays out of reach; containers outlive pgod; a service that left the config has its
// containers really removed, by a one-shot worker running as nobody through its gate socket.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

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
    // A bind of a directory in the checkout: the gate must pass through the checkout (0710, its
    // group) to resolve it.
    upstream.commit({{"compose.yaml", "services:\n  app:\n    image: " + docker_environment().image() +
                                          "\n    command: [\"sleep\", \"3600\"]\n    volumes:\n      - ./data:/data\n"},
                     {"data/hello", "hello from the checkout\n"}});
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
  EXPECT_EQ(probe("docker_version"), "exit-0") << "its socket on the docker gate reaches the daemon under the filter";
  EXPECT_NE(probe("docker_direct"), "exit-0") << "dockerd's own socket is not the worker's to use (no docker group)";
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
  EXPECT_EQ(docker_environment().docker({"exec", id, "busybox", "cat", "/data/hello"}).out, "hello from the checkout\n")
      << "the bind source was judged and mounted through the gate";
  struct stat checkout {};
  ASSERT_EQ(stat((pgod.dir() + "/" + name).c_str(), &checkout), 0);
  EXPECT_EQ(checkout.st_mode & 07777, 0710u) << "the gate's group may pass through, list and read nothing";
  EXPECT_EQ(checkout.st_gid, dockergate_user().gid);

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

// The docker gate pgod runs (its pid: the process of the gate's user named pgod-dockergate).
pid_t dockergate_pid() {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    auto status = proc_status(pid);
    const std::string uid = std::to_string(dockergate_user().uid);
    if (status["Name"] == "pgod-dockergate" && status["Uid"].starts_with(uid + "\t")) return pid;
  }
  return 0;
}

// A gate that dies is started again by pgod, confined as before, and the service's socket (pgod
// holds it) is served again: the worker's next call reaches dockerd.
TEST_F(SupervisorDockerTest, AKilledGateIsStartedAgainAndServesTheSameSockets) {
  pgod.use_real_docker();
  pgod.write_config(config());
  pgod.start();
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return docker_environment().containers(name).size() == 1; }, 120s))
      << pgod.log();
  const pid_t first = dockergate_pid();
  ASSERT_GT(first, 0) << pgod.log();
  auto status = proc_status(first);
  EXPECT_EQ(status["NoNewPrivs"], "1");
  EXPECT_EQ(status["Seccomp"], "2");
  EXPECT_EQ(status["CapEff"], "0000000000000000");
  std::set<std::string> groups;
  std::istringstream listed(status["Groups"]);
  for (std::string group; listed >> group;) groups.insert(group);
  EXPECT_EQ(groups.count(std::to_string(docker_group())), 1u) << "the gate alone holds the docker group";
  ASSERT_EQ(kill(first, SIGKILL), 0);
  pid_t second = 0;
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return (second = dockergate_pid()) > 0 && second != first; }, 10s))
      << pgod.log();
  // The service's socket is the same file, served by the new gate: compose through it works.
  bool served = false;
  ProcessResult ps;
  PgodHarness::wait_for(
      [&]() {
        ps = run_process({"/usr/bin/docker", "-H", "unix://" + pgod.rundir() + "/docker/" + name + ".sock", "ps",
                          "--format", "{{.Names}}"});
        return served = ps.exit_code == 0 && ps.out.find(name) != std::string::npos;
      },
      10s);
  EXPECT_TRUE(served) << ps.out << ps.err << pgod.log();
}

// The docker gate run as pgod-dockergate.service would: started by hand as the gate's user with
// the docker group, `--handover <rundir>/dockergate.sock`. Returns its pid; its stderr goes to
// `log`.
pid_t start_gate_unit(const std::string& rundir, const std::string& log) {
  const std::string docker_gid = std::to_string(docker_group());
  const std::vector<std::string> argv = {"/usr/bin/setpriv",
                                         "--reuid=" + std::to_string(dockergate_user().uid),
                                         "--regid=" + std::to_string(dockergate_user().gid),
                                         "--groups=" + docker_gid,
                                         programs_dir() + "/pgod-dockergate",
                                         "--handover",
                                         rundir + "/dockergate.sock"};
  const pid_t pid = fork();
  if (pid == 0) {
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0 || dup2(out, 2) < 0) _exit(127);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Whether `pid` (a child) exits within `limit`; its exit code in `code`.
bool exits_within(pid_t pid, std::chrono::seconds limit, int& code) {
  return PgodHarness::wait_for(
      [&]() {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) != pid) return false;
        code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return true;
      },
      limit);
}

// pgod --no-dockergate (pgod.service under systemd): the gate is a unit of its own and takes the
// services' sockets from pgod; only the gate's uid is served; when the services change, pgod
// closes the hand-over, the gate exits, and started again (as systemd does) serves the new set.
TEST_F(SupervisorDockerTest, TheGateAsItsOwnUnitTakesTheSocketsFromPgodAndComesBackForANewSet) {
  pgod.use_real_docker();
  pgod.write_config(config());
  pgod.start({"--no-dockergate"});
  const std::string handover = pgod.rundir() + "/dockergate.sock";
  ASSERT_TRUE(std::filesystem::exists(handover)) << pgod.log();

  // Another uid is refused the sockets even in the gate's group (the file mode lets it connect):
  // the gate's own program, run as service a's user.
  const auto stranger = run_process({"/usr/bin/setpriv", "--reuid=" + std::to_string(service_user_a().uid),
                                     "--regid=" + std::to_string(service_user_a().gid),
                                     "--groups=" + std::to_string(dockergate_user().gid),
                                     programs_dir() + "/pgod-dockergate", "--handover", handover});
  EXPECT_NE(stranger.exit_code, 0) << stranger.err;
  EXPECT_NE(pgod.log().find("the docker gate's hand-over: refused a connection from uid " +
                            std::to_string(service_user_a().uid)),
            std::string::npos)
      << pgod.log();

  const std::string gate_log = pgod.root() + "/dockergate.log";
  pid_t gate = start_gate_unit(pgod.rundir(), gate_log);
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return docker_environment().containers(name).size() == 1; }, 120s))
      << pgod.log() << read_file(gate_log);

  // A second service: the hand-over closes, the gate exits 0, and comes back for both.
  const std::string second = name + "b";
  auto& upstream = pgod.upstream(second);
  upstream.commit({{"compose.yaml", "services:\n  app:\n    image: " + docker_environment().image() +
                                        "\n    command: [\"sleep\", \"3600\"]\n"}});
  pgod.write_config(config() + PgodHarness::service_toml(second, service_user_b().name, upstream.path()));
  int code = -1;
  ASSERT_TRUE(exits_within(gate, 30s, code)) << read_file(gate_log);
  EXPECT_EQ(code, 0) << read_file(gate_log);
  EXPECT_NE(read_file(gate_log).find("pgod closed the hand-over"), std::string::npos) << read_file(gate_log);
  gate = start_gate_unit(pgod.rundir(), gate_log);
  const bool second_up =
      PgodHarness::wait_for([&]() { return docker_environment().containers(second).size() == 1; }, 120s);
  stop_child(gate, 5s);
  for (const auto& id : docker_environment().containers(second)) docker_environment().docker({"rm", "-f", id});
  docker_environment().docker({"network", "rm", second + "_default"});
  EXPECT_TRUE(second_up) << pgod.log() << read_file(gate_log);
}

}  // namespace
}  // namespace pgod::test
