// pgod-worker as a process: real git repositories, the recording stand-in docker, and the
// Cap'n Proto interface the gateway uses. (The real-engine end-to-end test is separate.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "git_fixture.h"
#include "worker_harness.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;
using rpc::ServiceState;
using rpc::Verb;

const std::string kCompose = "services:\n  web:\n    image: busybox:pgod-test\n    command: [\"sleep\", \"3600\"]\n";
const std::string kKey =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPRbE6PfrAhKDwL7mRe6WEE3NAeCewiD8eIh6iLKFrug dev@laptop\n";

// The state file's deployed= line (its upstream= line follows every fetch).
std::string deployed_line(const std::string& state) {
  const auto start = state.find("deployed=");
  if (start == std::string::npos) return "";
  return state.substr(start, state.find('\n', start) + 1 - start);
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream = std::make_unique<GitUpstream>(repos.path());
    first_commit = upstream->commit({{"compose.yaml", kCompose}, {"ssh/dev.pub", kKey}, {"README", "hello\n"}});
  }

  // Starts the worker and waits for the first cycle to finish.
  void start(WorkerHarness& worker) {
    worker.start();
    ASSERT_TRUE(worker.wait_for([&] { return worker.state() != ServiceState::STARTING; })) << worker.worker_log();
  }

  TempDir repos;
  std::unique_ptr<GitUpstream> upstream;
  std::string first_commit;
};

TEST_F(WorkerTest, FirstCycleClonesValidatesAndComesUpWithAMinimalEnvironment) {
  WorkerHarness worker(upstream->path(), [](rpc::ServiceSettings::Builder s) {
    auto env = s.initEnv(1);
    env[0].setName("GREETING");
    env[0].setValue("hello-secret-value");
  });
  start(worker);
  EXPECT_EQ(worker.state(), ServiceState::OK) << worker.worker_log();
  const auto calls = worker.calls();
  const auto file = worker.checkout_dir() + "/compose.yaml";
  // Detection first (no plugin here), then normalise, then up -d; all as docker-compose -p web -f FILE.
  EXPECT_NE(calls.find("docker compose version"), std::string::npos) << calls;
  EXPECT_NE(calls.find("docker-compose -p web -f " + file + " config | cwd=" + worker.checkout_dir()),
            std::string::npos)
      << calls;
  // up runs the model that passed the policy, not the checkout's file again.
  EXPECT_NE(calls.find("docker-compose -p web -f " + worker.state_dir() +
                       "/compose.validated.yaml up -d | cwd=" + worker.checkout_dir()),
            std::string::npos)
      << calls;
  EXPECT_EQ(count(calls, " down "), 0u) << "a first deploy does not take anything down";
  // Only PATH, HOME, DOCKER_CONFIG, PYTHONNOUSERSITE, the service's env and the pins of
  // compose's own variables reach compose: the docker endpoint, the files, profiles, project
  // and remote includes are pinned, so a .env in the repository cannot choose them.
  const auto config_line = calls.substr(calls.find(" config | "));
  const auto env_at = config_line.find(" | env=") + 7;
  std::stringstream entries(config_line.substr(env_at, config_line.find(" |", env_at) - env_at));
  std::set<std::string> environment;
  for (std::string entry; std::getline(entries, entry, ',');) environment.insert(entry);
  for (const auto& entry : environment) {
    const auto name = entry.substr(0, entry.find('='));
    EXPECT_TRUE(name == "GREETING" || name == "PYTHONNOUSERSITE" || name.starts_with("COMPOSE_") ||
                name.starts_with("DOCKER_") || name.starts_with("BUILDX_") || name.starts_with("BUILDKIT_"))
        << "compose got " << name;
  }
  for (const char* pinned :
       {"GREETING=hello-secret-value", "PYTHONNOUSERSITE=1", "DOCKER_HOST=unix:///var/run/docker.sock",
        "DOCKER_CONTEXT=default", "DOCKER_TLS_VERIFY=", "DOCKER_CERT_PATH=", "COMPOSE_PROJECT_NAME=web",
        "COMPOSE_FILE=", "COMPOSE_PROFILES=", "COMPOSE_ENV_FILES=", "COMPOSE_EXPERIMENTAL_GIT_REMOTE=false",
        "COMPOSE_EXPERIMENTAL_OCI_REMOTE=false", "COMPOSE_COMPATIBILITY=false"})
    EXPECT_EQ(environment.count(pinned), 1u) << pinned << " in " << config_line;
  EXPECT_EQ(worker.worker_log().find("hello-secret-value"), std::string::npos) << "env values never reach the log";

  auto response = worker.client().statusRequest().send().wait(worker.io().waitScope);
  auto status = response.getStatus();
  EXPECT_EQ(std::string(status.getHash().cStr()), first_commit);
  EXPECT_EQ(std::string(status.getComposeFile().cStr()), "compose.yaml");
  EXPECT_GT(status.getLastDeploy(), 0);

  auto keys = worker.client().authorizedKeysRequest().send().wait(worker.io().waitScope);
  ASSERT_EQ(keys.getKeys().size(), 1u);
  EXPECT_EQ(std::string(keys.getKeys()[0].getType().cStr()), "ssh-ed25519");
  EXPECT_EQ(std::string(keys.getKeys()[0].getComment().cStr()), "dev@laptop");
  EXPECT_EQ(std::string(keys.getKeys()[0].getFile().cStr()), "ssh/dev.pub");
}

TEST_F(WorkerTest, ComposeVerbsStreamOutputAndPassTheExitCodeThrough) {
  WorkerHarness worker(upstream->path());
  start(worker);
  auto ps = worker.run(Verb::PS);
  EXPECT_EQ(ps.exit_status, 0u);
  EXPECT_EQ(ps.out, "NAME          STATUS\nstandin-web-1 Up\n");
  worker.touch("ps-exit");
  std::ofstream(worker.standin_dir() + "/ps-exit") << "3";
  ps = worker.run(Verb::PS, {"-a"});
  EXPECT_EQ(ps.exit_status, 3u) << "compose's own code, unchanged";
  EXPECT_NE(worker.calls().find(" ps --all |"), std::string::npos);

  auto logs = worker.run(Verb::LOGS, {"--tail", "2"});
  EXPECT_EQ(logs.out, "web-1 | hello\nweb-1 | world\n");

  auto exec = worker.run(Verb::EXEC, {"web", "sh", "-c", "echo 'a b'"});
  EXPECT_EQ(exec.exit_status, 0u);
  EXPECT_NE(worker.calls().find(" exec -T web sh -c echo 'a b' |"), std::string::npos) << worker.calls();

  auto hash = worker.run(Verb::GIT_HASH);
  EXPECT_EQ(hash.out, first_commit + "\n");
}

// A restarted worker serves its checkout from its first moment, before it knows which compose
// program it has: a command asked then waits for that answer instead of running no program.
TEST_F(WorkerTest, ACommandAskedBeforeTheComposeProgramIsKnownWaitsForIt) {
  WorkerHarness worker(upstream->path());
  start(worker);
  ASSERT_EQ(worker.stop(), 0);
  worker.clear_calls();
  std::ofstream(worker.standin_dir() + "/compose-probe-delay") << "1.5";
  worker.start();
  const auto asked = std::chrono::steady_clock::now();
  auto ps = worker.run(Verb::PS);
  EXPECT_GE(std::chrono::steady_clock::now() - asked, 1s) << "answered before the probe finished";
  EXPECT_EQ(ps.exit_status, 0u) << ps.err;
  EXPECT_EQ(ps.out, "NAME          STATUS\nstandin-web-1 Up\n");
  EXPECT_NE(worker.calls().find("docker-compose -p "), std::string::npos) << worker.calls();
}

TEST_F(WorkerTest, RefusedArgumentsNeverReachDocker) {
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.clear_calls();
  for (const auto& [verb, args] :
       std::vector<std::pair<Verb, std::vector<std::string>>>{{Verb::EXEC, {"--privileged", "web", "sh"}},
                                                              {Verb::UP, {"-f", "/etc/evil.yaml"}},
                                                              {Verb::PS, {"--project-directory", "/"}},
                                                              {Verb::DOWN, {"-p", "other"}},
                                                              {Verb::LOGS, {"--env-file", "/etc/shadow"}}}) {
    auto result = worker.run(verb, args);
    EXPECT_EQ(result.exit_status, 406u);
    EXPECT_NE(result.message.find("is not allowed"), std::string::npos) << result.message;
  }
  EXPECT_EQ(worker.calls(), "");
  // Each is in the history with its refusal, and makes room first: a flood of refusals cannot
  // push out the commands that ran.
  // The file's lines: time, command, caller, commit, result, ms, makes room first, detail.
  std::vector<std::vector<std::string>> commands;
  std::istringstream file(read_file(worker.state_dir() + "/commands"));
  for (std::string line; std::getline(file, line);) {
    std::vector<std::string> fields;
    std::istringstream parts(line);
    for (std::string field; std::getline(parts, field, '\t');) fields.push_back(field);
    commands.push_back(fields);
  }
  ASSERT_EQ(commands.size(), 5u);
  EXPECT_EQ(commands[0][1], "exec --privileged web sh");
  EXPECT_EQ(commands[0][2], "test");
  for (const auto& command : commands) {
    ASSERT_EQ(command.size(), 8u);
    EXPECT_EQ(command[4], "exit 406") << command[1];
    EXPECT_EQ(command[6], "1") << command[1];
    EXPECT_NE(command[7].find("is not allowed"), std::string::npos) << command[7];
  }
}

// A verb number this build does not know (a newer peer's) is refused: never taken for status.
TEST_F(WorkerTest, AnUnknownVerbOnTheWireIsRefusedNotTakenForStatus) {
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.clear_calls();
  auto unknown = worker.run(static_cast<Verb>(999));
  EXPECT_EQ(unknown.exit_status, 406u);
  EXPECT_EQ(unknown.message, "Command \"verb #999\" does not match any route");
  EXPECT_EQ(unknown.out, "");
  EXPECT_EQ(unknown.err, "");
  EXPECT_EQ(worker.calls(), "");
  // The known verbs still answer.
  auto status = worker.run(Verb::STATUS);
  EXPECT_EQ(status.exit_status, 0u) << status.err;
  EXPECT_NE(status.out.find("state:"), std::string::npos) << status.out;
}

TEST_F(WorkerTest, ComposeChangeRedeploysAndUnrelatedCommitDoesNot) {
  WorkerHarness worker(upstream->path());
  start(worker);

  worker.clear_calls();
  upstream->commit({{"README", "only the readme\n"}});
  auto pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 0u) << pull.err;
  EXPECT_EQ(count(worker.calls(), " down"), 0u) << worker.calls();
  EXPECT_EQ(count(worker.calls(), " up -d"), 1u) << "self-heal only";

  worker.clear_calls();
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"2\"\n"}});
  pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 0u) << pull.err;
  const auto calls = worker.calls();
  const auto down = calls.find(" down |");
  const auto up = calls.find(" up -d |");
  ASSERT_NE(down, std::string::npos) << calls;
  ASSERT_NE(up, std::string::npos) << calls;
  EXPECT_LT(down, up) << "down, then up";
  EXPECT_EQ(worker.state(), ServiceState::OK);
}

TEST_F(WorkerTest, ReferencedFileChangeRedeploys) {
  upstream->commit({{"compose.yaml", kCompose + "    env_file: app.env\n"}, {"app.env", "A=1\n"}});
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.clear_calls();
  upstream->commit({{"app.env", "A=2\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_NE(worker.calls().find(" down |"), std::string::npos) << worker.calls();
}

TEST_F(WorkerTest, XPgoReloadFalseMeansUpWithoutDown) {
  upstream->commit({{"compose.yaml", kCompose + "x-pgo:\n  reload: false\n"}});
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.clear_calls();
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"3\"\nx-pgo:\n  reload: false\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(count(worker.calls(), " down"), 0u) << worker.calls();
  EXPECT_EQ(count(worker.calls(), " up -d"), 1u) << worker.calls();
}

TEST_F(WorkerTest, RefusedComposeFileLeavesTheContainersAloneAndSaysWhy) {
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.clear_calls();
  const auto model_before = read_file(worker.state_dir() + "/compose.validated.yaml");
  const auto deployed_before = deployed_line(read_file(worker.state_dir() + "/state"));
  ASSERT_NE(model_before, "");
  ASSERT_NE(deployed_before, "deployed=\n");
  upstream->commit({{"compose.yaml", kCompose + "    privileged: true\n"}});
  auto pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  EXPECT_EQ(read_file(worker.state_dir() + "/compose.validated.yaml"), model_before) << "the saved model is kept";
  EXPECT_EQ(deployed_line(read_file(worker.state_dir() + "/state")), deployed_before) << "still the deployed commit";
  const auto calls = worker.calls();
  EXPECT_EQ(count(calls, " down"), 0u) << calls;
  EXPECT_EQ(count(calls, " up"), 0u) << calls;
  auto response = worker.client().statusRequest().send().wait(worker.io().waitScope);
  const std::string error = response.getStatus().getLastError().cStr();
  EXPECT_NE(error.find("service \"web\": key \"privileged\""), std::string::npos) << error;

  auto load = worker.run(Verb::LOAD);
  EXPECT_EQ(load.exit_status, 1u);
  EXPECT_NE(load.err.find("privileged"), std::string::npos) << load.err;
  // The refused commit was judged in the staging tree and never checked out: the checkout, and
  // so an explicit up, still has the last accepted file.
  std::ifstream live(worker.checkout_dir() + "/compose.yaml");
  std::stringstream live_text;
  live_text << live.rdbuf();
  EXPECT_EQ(live_text.str(), kCompose);
  auto up = worker.run(Verb::UP);
  EXPECT_EQ(up.exit_status, 0u) << up.err;
  EXPECT_EQ(worker.calls().find("privileged"), std::string::npos);

  // Fixed upstream: back to OK.
  upstream->commit({{"compose.yaml", kCompose}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::OK);
}

// A service whose compose file never passed the policy has no judged model: the verbs that run
// on one are refused without running compose, which would read the checkout's file, its .env
// and what they name unjudged (a .env's LD_PRELOAD reaches the docker CLI that v1's exec runs).
TEST_F(WorkerTest, WithoutAnAcceptedModelTheVerbsThatRunOneAreRefusedAndComposeNeverRuns) {
  upstream->commit({{"compose.yaml", kCompose + "    privileged: true\n"}, {".env", "LD_PRELOAD=/tmp/evil.so\n"}});
  WorkerHarness worker(upstream->path());
  start(worker);
  ASSERT_EQ(worker.state(), ServiceState::BROKEN) << worker.worker_log();
  worker.clear_calls();
  for (const auto& [verb, args] : std::vector<std::pair<Verb, std::vector<std::string>>>{{Verb::PS, {}},
                                                                                         {Verb::LOGS, {}},
                                                                                         {Verb::EXEC, {"web", "id"}},
                                                                                         {Verb::STOP, {}},
                                                                                         {Verb::START, {}},
                                                                                         {Verb::RESTART, {}},
                                                                                         {Verb::DOWN, {}}}) {
    const auto refused = worker.run(verb, args);
    EXPECT_EQ(refused.exit_status, 1u) << refused.err;
    // The refused first commit was never checked out, so there is nothing to run compose on.
    EXPECT_TRUE(refused.err.find("no compose file of this service has passed the policy yet") != std::string::npos ||
                refused.err.find("no compose file in the checkout") != std::string::npos)
        << refused.err;
  }
  EXPECT_EQ(worker.calls(), "") << "compose ran";
  // Once a file passes, they run on its model.
  upstream->commit({{"compose.yaml", kCompose}});
  worker.run(Verb::GIT_PULL);
  ASSERT_EQ(worker.state(), ServiceState::OK) << worker.worker_log();
  worker.clear_calls();
  EXPECT_EQ(worker.run(Verb::PS).exit_status, 0u);
  EXPECT_NE(worker.calls().find("/compose.validated.yaml ps"), std::string::npos) << worker.calls();
}

TEST_F(WorkerTest, FailedUpIsBrokenWithComposesMessage) {
  WorkerHarness worker(upstream->path());
  worker.touch("fail-up");
  start(worker);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  auto response = worker.client().statusRequest().send().wait(worker.io().waitScope);
  const std::string error = response.getStatus().getLastError().cStr();
  EXPECT_NE(error.find("compose up failed (exit 1): ERROR: stand-in up failed"), std::string::npos) << error;
}

TEST_F(WorkerTest, StopFileBringsTheServiceDownAndKeepsItDown) {
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.clear_calls();
  std::ofstream(worker.stop_file()) << "";
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::STOPPED);
  EXPECT_NE(worker.calls().find(" down |"), std::string::npos);
  auto up = worker.run(Verb::UP);
  EXPECT_EQ(up.exit_status, 1u);
  EXPECT_NE(up.err.find("web.stop exists"), std::string::npos) << up.err;
  worker.clear_calls();
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.calls(), "") << "stays down without calling docker again";

  std::remove(worker.stop_file().c_str());
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::OK);
  EXPECT_NE(worker.calls().find(" up -d |"), std::string::npos);
}

TEST_F(WorkerTest, LogsFollowStreamsUntilCancelledThenTheProcessIsKilled) {
  WorkerHarness worker(upstream->path());
  start(worker);
  std::string out, err;
  auto request = worker.client().runRequest();
  request.setVerb(Verb::LOGS);
  request.initArgs(1).set(0, "-f");
  request.setOutput(kj::heap<CollectingSink>(out, err));
  {
    auto call = request.send();
    ASSERT_TRUE(worker.wait_for([&] { return out.find("line 5\n") != std::string::npos; })) << out;
    // Dropping the call is what the gateway does when the SSH client goes away.
  }
  pid_t pid = 0;
  std::ifstream(worker.standin_dir() + "/logs.pid") >> pid;
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(worker.wait_for([&] {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string a, b, state;
    return !(stat >> a >> b >> state) || state == "Z";
  })) << "compose logs -f still running after the caller left";
  // The worker carries on.
  worker.sleep(100ms);
  EXPECT_EQ(waitpid(worker.pid(), nullptr, WNOHANG), 0) << "the worker died:\n" << worker.worker_log();
  EXPECT_EQ(worker.run(Verb::GIT_HASH).exit_status, 0u);
}

TEST_F(WorkerTest, RegistryLoginUsesStdinAndLogsOutAfterPull) {
  WorkerHarness worker(upstream->path(), [](rpc::ServiceSettings::Builder s) {
    auto registries = s.initRegistries(1);
    registries[0].setUser("deploy");
    registries[0].setToken("s3cret-registry-token");
    registries[0].setRegistry("127.0.0.1:5000");
  });
  start(worker);
  worker.clear_calls();
  auto pull = worker.run(Verb::PULL);
  EXPECT_EQ(pull.exit_status, 0u) << pull.err;
  const auto calls = worker.calls();
  const auto login = calls.find("docker login -u deploy --password-stdin 127.0.0.1:5000 |");
  const auto compose_pull = calls.find(" pull |");
  const auto logout = calls.find("docker logout 127.0.0.1:5000 |", compose_pull);
  ASSERT_NE(login, std::string::npos) << calls;
  ASSERT_NE(compose_pull, std::string::npos) << calls;
  ASSERT_NE(logout, std::string::npos) << calls;
  EXPECT_LT(login, compose_pull);
  EXPECT_LT(compose_pull, logout);
  EXPECT_NE(calls.find("stdin=s3cret-registry-token"), std::string::npos) << "the token goes on stdin";
  EXPECT_EQ(calls.find("--password s3cret"), std::string::npos);
  EXPECT_EQ(worker.worker_log().find("s3cret-registry-token"), std::string::npos);
}

TEST_F(WorkerTest, FreezeSurvivesARestartAndUnfreezeCatchesUp) {
  auto worker = std::make_unique<WorkerHarness>(upstream->path());
  start(*worker);
  EXPECT_EQ(worker->run(Verb::FREEZE).exit_status, 0u);
  EXPECT_EQ(worker->state(), ServiceState::FROZEN);
  const auto second = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"4\"\n"}});
  auto pull = worker->run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u);
  EXPECT_NE(pull.err.find("FROZEN: not pulling"), std::string::npos) << pull.err;

  worker->stop();
  worker->start();
  ASSERT_TRUE(worker->wait_for([&] { return worker->state() != ServiceState::STARTING; }));
  EXPECT_EQ(worker->state(), ServiceState::FROZEN) << worker->worker_log();
  EXPECT_EQ(worker->run(Verb::GIT_HASH).out, first_commit + "\n");

  auto unfreeze = worker->run(Verb::UNFREEZE);
  EXPECT_EQ(unfreeze.exit_status, 0u) << unfreeze.err;
  EXPECT_EQ(worker->state(), ServiceState::OK);
  EXPECT_EQ(worker->run(Verb::GIT_HASH).out, second + "\n");
}

// Keys are the tracked branch head's, whatever the checkout is pinned to: a rollback to an old
// commit does not bring back a key removed since.
TEST_F(WorkerTest, RollbackKeepsTheKeysOfTheTrackedHead) {
  const std::string other_key =
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBNmBqZ4Ah5mOn6G4CDbs8VJ4BPXjB0F2C8mPTl9vJ3U ci@runner\n";
  upstream->commit({{"ssh/dev.pub", std::nullopt}, {"ssh/ci.pub", other_key}}, "dev leaves");
  WorkerHarness worker(upstream->path());
  start(worker);
  const auto comments = [&] {
    auto keys = worker.client().authorizedKeysRequest().send().wait(worker.io().waitScope);
    std::string out;
    for (auto key : keys.getKeys()) out += std::string(key.getComment().cStr()) + ";";
    return out;
  };
  EXPECT_EQ(comments(), "ci@runner;");
  auto rollback = worker.run(Verb::ROLLBACK, {first_commit});
  ASSERT_EQ(rollback.exit_status, 0u) << rollback.err;
  EXPECT_TRUE(std::filesystem::exists(worker.checkout_dir() + "/ssh/dev.pub")) << "the checkout is at the old commit";
  EXPECT_EQ(comments(), "ci@runner;") << "the removed key stays removed";
}

// A rollback target is judged before the checkout moves: one the policy refuses is refused, and
// the checkout and the containers stay as they were.
TEST_F(WorkerTest, RollbackToARefusedCommitIsRefusedAndNothingMoves) {
  const auto bad = upstream->commit({{"compose.yaml", kCompose + "    privileged: true\n"}});
  upstream->commit({{"compose.yaml", kCompose}});
  WorkerHarness worker(upstream->path());
  start(worker);
  ASSERT_EQ(worker.state(), ServiceState::OK) << worker.worker_log();
  const auto head = worker.run(Verb::GIT_HASH).out;
  worker.clear_calls();
  auto rollback = worker.run(Verb::ROLLBACK, {bad});
  EXPECT_EQ(rollback.exit_status, 1u);
  EXPECT_NE(rollback.err.find("privileged"), std::string::npos) << rollback.err;
  EXPECT_EQ(worker.run(Verb::GIT_HASH).out, head);
  EXPECT_EQ(worker.state(), ServiceState::OK);
  EXPECT_EQ(count(worker.calls(), " up"), 0u) << worker.calls();
  EXPECT_EQ(count(worker.calls(), " down"), 0u) << worker.calls();
}

// load judges the tracked branch's head, freshly fetched, in the staging tree: a pushed change
// can be checked before (and without) any deploy.
TEST_F(WorkerTest, LoadJudgesTheFetchedHeadWithoutDeployingIt) {
  WorkerHarness worker(upstream->path());
  start(worker);
  const auto head = worker.run(Verb::GIT_HASH).out;
  upstream->commit({{"compose.yaml", kCompose + "    cap_add: [SYS_ADMIN]\n"}});
  worker.clear_calls();
  auto load = worker.run(Verb::LOAD);
  EXPECT_EQ(load.exit_status, 1u);
  EXPECT_NE(load.err.find("cap_add"), std::string::npos) << load.err;
  EXPECT_EQ(worker.run(Verb::GIT_HASH).out, head) << "load never moves the checkout";
  EXPECT_EQ(count(worker.calls(), " up"), 0u) << worker.calls();
  upstream->commit({{"compose.yaml", kCompose + "    cap_drop: [ALL]\n"}});
  load = worker.run(Verb::LOAD);
  EXPECT_EQ(load.exit_status, 0u) << load.err;
  EXPECT_EQ(load.out, "compose.yaml: OK\n");
  EXPECT_EQ(worker.run(Verb::GIT_HASH).out, head);
}

// An install from before the repository moved out of the checkout: a checkout with its own
// .git (whose config a container may have rewritten) and a deployed commit the new policy
// refuses (a read-write bind of the checkout root). The worker clones the remote anew into its
// state directory, never reads the old .git, judges the commit, and says BROKEN with the reason
// without touching the checkout or the containers. Real compose normalises (no engine needed).
TEST_F(WorkerTest, AnUpgradedInstallMovesItsRepositoryAndARefusedServiceKeepsRunning) {
  upstream->commit({{"compose.yaml", kCompose + "    volumes:\n      - .:/app\n"}});
  const auto deployed = upstream->head();
  WorkerHarness worker(upstream->path(), {}, /*standin=*/false);
  std::filesystem::remove(worker.checkout_dir());
  ASSERT_EQ(run_process({"/usr/bin/git", "clone", "-q", upstream->path(), worker.checkout_dir()}).exit_code, 0);
  TempDir elsewhere;
  ASSERT_EQ(
      run_process({"/usr/bin/git", "-C", worker.checkout_dir(), "config", "core.worktree", elsewhere.path()}).exit_code,
      0);
  std::ofstream(worker.state_dir() + "/state") << "frozen=0\npinned=\ndeployed=" << deployed << "\nlast_deploy=1\n";
  start(worker);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN) << worker.worker_log();
  auto status = worker.client().statusRequest().send().wait(worker.io().waitScope);
  const std::string error = status.getStatus().getLastError().cStr();
  EXPECT_NE(error.find("a read-write bind of the checkout root"), std::string::npos) << error;
  EXPECT_TRUE(std::filesystem::is_directory(worker.state_dir() + "/git")) << "cloned into the state directory";
  EXPECT_TRUE(std::filesystem::is_empty(elsewhere.path())) << "the old .git's core.worktree was never honoured";
  EXPECT_EQ(worker.worker_log().find("deployed"), std::string::npos) << "nothing came up or went down";
  // A fix pushed to the repository passes load (judged in the staging tree).
  upstream->commit({{"compose.yaml", kCompose + "    volumes:\n      - .:/app:ro\n"}});
  worker.run(Verb::LOAD);
  EXPECT_EQ(worker.run(Verb::LOAD).exit_status, 0u);
}

// After an upgrade the saved model may be one the new policy refuses (it keeps running, BROKEN):
// the commit that fixes it must still be deployable. Only refusals a new tree adds to the running
// model (its bind sources turned into something else) hold a commit back.
TEST_F(WorkerTest, ARunningModelTheNewPolicyRefusesDoesNotBlockTheFix) {
  WorkerHarness worker(upstream->path());
  start(worker);
  ASSERT_EQ(worker.state(), ServiceState::OK);
  // What an older pgod accepted and saved, refused by this version's policy.
  std::ofstream(worker.state_dir() + "/compose.validated.yaml") << kCompose << "    privileged: true\n";
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"2\"\n"}});
  auto pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 0u) << pull.out << pull.err;
  EXPECT_EQ(worker.state(), ServiceState::OK);
  const auto saved = read_file(worker.state_dir() + "/compose.validated.yaml");
  EXPECT_EQ(saved.find("privileged"), std::string::npos) << "the fix replaced the refused model: " << saved;
  EXPECT_NE(saved.find("V: \"2\""), std::string::npos) << saved;
}

// A deploy whose container exits at once fails its health gate: the last good deploy comes back
// (REVERTED, with which container and why), the failed commit is not tried again until upstream
// moves, and that survives a restart of the worker.
TEST_F(WorkerTest, ADeployThatFailsItsHealthGateGoesBackToTheLastGoodOne) {
  WorkerHarness worker(upstream->path());
  start(worker);
  ASSERT_EQ(worker.state(), ServiceState::OK);
  const auto bad = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      MODE: exits-at-once\n"}});
  worker.clear_calls();
  auto pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u) << pull.out;
  EXPECT_EQ(worker.state(), ServiceState::REVERTED);
  auto status = worker.client().statusRequest().send().wait(worker.io().waitScope);
  const std::string error = status.getStatus().getLastError().cStr();
  EXPECT_NE(error.find("deploy of " + bad.substr(0, 12) +
                       " failed its health gate: container standin-web-1 (service "
                       "\"web\") exited with code 3"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("running " + first_commit.substr(0, 12) + " again"), std::string::npos) << error;
  EXPECT_EQ(std::string(status.getStatus().getHash().cStr()), first_commit) << "the checkout went back too";
  EXPECT_EQ(read_file(worker.state_dir() + "/compose.validated.yaml").find("exits-at-once"), std::string::npos);
  EXPECT_EQ(count(worker.calls(), " up -d --remove-orphans"), 1u) << worker.calls();

  // Not tried again while upstream stays there, across a restart too.
  worker.clear_calls();
  worker.run(Verb::GIT_PULL);
  worker.stop();
  worker.start();
  ASSERT_TRUE(worker.wait_for([&] { return worker.state() != ServiceState::STARTING; }, 30s));
  EXPECT_EQ(worker.state(), ServiceState::REVERTED);
  // Only the cycle's self-heal of the good deploy: no way back again, the failed file never up.
  EXPECT_EQ(count(worker.calls(), "--remove-orphans"), 0u) << worker.calls();
  EXPECT_EQ(read_file(worker.state_dir() + "/compose.validated.yaml").find("exits-at-once"), std::string::npos);

  // Upstream moves on: deployed, and the service is OK again.
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      MODE: fixed\n"}});
  pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 0u) << pull.out << pull.err;
  EXPECT_EQ(worker.state(), ServiceState::OK);
  EXPECT_NE(read_file(worker.state_dir() + "/state").find("\nfailed=\n"), std::string::npos)
      << read_file(worker.state_dir() + "/state");

  // The history, newest first, across the restart: what deployed, what was reverted and why,
  // and the commands that asked (each git pull's own line, its exit status; the newest line is
  // the last pull, which ended after the deploy it asked for).
  const auto history = worker.run(Verb::HISTORY);
  EXPECT_EQ(history.exit_status, 0u);
  std::vector<std::string> lines, commands;
  std::istringstream text(history.out);
  for (std::string line; std::getline(text, line);)
    (line.find("  exit ") != std::string::npos ? commands : lines).push_back(line);
  ASSERT_EQ(commands.size(), 3u) << history.out;
  EXPECT_EQ(history.out.substr(0, history.out.find('\n')), commands[0]);
  EXPECT_NE(commands[0].find("  exit 0 "), std::string::npos) << commands[0];
  EXPECT_NE(commands[0].find(" git pull by test"), std::string::npos) << commands[0];
  // The failed pull: exit 1, and the checkout back at the good commit when it ended.
  EXPECT_NE(commands[2].find(first_commit.substr(0, 12) + "  exit 1 "), std::string::npos) << commands[2];
  ASSERT_EQ(lines.size(), 3u) << history.out;
  EXPECT_NE(lines[0].find("  deployed "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find(" git pull by test"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find(bad.substr(0, 12) + "  reverted "), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("git pull by test: deploy of " + bad.substr(0, 12) + " failed its health gate"),
            std::string::npos)
      << lines[1];
  EXPECT_NE(lines[2].find(first_commit.substr(0, 12) + "  deployed "), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find(" start"), std::string::npos) << lines[2];
}

// The gate waits as long as pgo.toml's health_timeout says, or less when the compose file's
// x-pgo says so; a container still starting then fails it (and here the last good deploy too,
// whose container the stand-in also reports as starting: BROKEN, saying both).
TEST_F(WorkerTest, TheHealthTimeoutComesFromPgoTomlOrTheComposeFile) {
  WorkerHarness worker(upstream->path(), [](rpc::ServiceSettings::Builder s) {
    s.setName("web");
    s.setHealthTimeoutNs(2'000'000'000);
  });
  start(worker);
  ASSERT_EQ(worker.state(), ServiceState::OK);
  std::ofstream(worker.standin_dir() + "/inspect-json")
      << R"([{"Id":"c1","Name":"/web-web-1","Image":"sha256:standin","Config":{"Labels":{"com.docker.compose.service":"web"}},)"
      << R"("State":{"Status":"running","StartedAt":"2000-01-01T00:00:00Z","Health":{"Status":"starting"}}}])";
  const auto error_after = [&](const std::string& compose) {
    upstream->commit({{"compose.yaml", compose}});
    worker.run(Verb::GIT_PULL);
    auto status = worker.client().statusRequest().send().wait(worker.io().waitScope);
    return std::string(status.getStatus().getLastError().cStr());
  };
  auto error = error_after(kCompose + "    environment:\n      V: \"2\"\n");
  EXPECT_NE(error.find("failed its health gate: not ready after 2 s: container web-web-1 (service \"web\") health "
                       "starting"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("failed its health gate too: not ready after 2 s"), std::string::npos) << error;
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  error = error_after(kCompose + "    environment:\n      V: \"3\"\nx-pgo:\n  health_timeout: 1s\n");
  EXPECT_NE(error.find("not ready after 1 s"), std::string::npos) << error;
  // The repository may shorten pgo.toml's time, never lengthen it.
  error = error_after(kCompose + "    environment:\n      V: \"4\"\nx-pgo:\n  health_timeout: 30s\n");
  EXPECT_NE(error.find("not ready after 2 s"), std::string::npos) << error;
}

// An ed25519 key pair made with ssh-keygen in `dir`; the private key's path.
std::string signing_key(const std::string& dir, const std::string& name) {
  const std::string key = dir + "/" + name;
  const auto made = run_process({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key});
  if (made.exit_code != 0) throw std::runtime_error("ssh-keygen: " + made.err);
  return key;
}

// "principal key-type base64" for a key made above: one allowed-signers line.
std::string signer_line(const std::string& principal, const std::string& key) {
  std::istringstream public_key(read_file(key + ".pub"));
  std::string type, blob;
  public_key >> type >> blob;
  return principal + " " + type + " " + blob;
}

class SignedCommitTest : public WorkerTest {
 protected:
  void SetUp() override {
    WorkerTest::SetUp();
    alice = signing_key(keys.path(), "alice");
    mallory = signing_key(keys.path(), "mallory");
    upstream->sign_commits(alice);
    signed_head = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"signed\"\n"}});
  }

  std::function<void(rpc::ServiceSettings::Builder)> with_signers(bool allow_force_push = false) const {
    return [line = signer_line("alice@example.org", alice), allow_force_push](rpc::ServiceSettings::Builder s) {
      s.setName("web");
      auto signers = s.initSigners(1);
      signers.set(0, line);
      s.setAllowForcePush(allow_force_push);
    };
  }

  static std::string hash_of(WorkerHarness& worker) {
    auto status = worker.client().statusRequest().send().wait(worker.io().waitScope);
    return status.getStatus().getHash().cStr();
  }

  static std::string last_error(WorkerHarness& worker) {
    auto status = worker.client().statusRequest().send().wait(worker.io().waitScope);
    return status.getStatus().getLastError().cStr();
  }

  TempDir keys;
  std::string alice, mallory, signed_head;
};

// With signers set, only a commit one of them signed reaches the checkout: unsigned, signed by
// another key, or signed over other bytes, the deployed commit stays, and the state says why.
TEST_F(SignedCommitTest, OnlyCommitsTheSignersSignedAreDeployed) {
  WorkerHarness worker(upstream->path(), with_signers());
  start(worker);
  ASSERT_EQ(worker.state(), ServiceState::OK) << worker.worker_log();
  EXPECT_EQ(hash_of(worker), signed_head);
  EXPECT_NE(worker.worker_log().find("is signed by alice@example.org"), std::string::npos) << worker.worker_log();

  upstream->sign_commits("");
  const auto unsigned_commit = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"u\"\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  EXPECT_NE(last_error(worker).find("commit " + unsigned_commit.substr(0, 12) + " is not signed"), std::string::npos)
      << last_error(worker);
  EXPECT_EQ(hash_of(worker), signed_head) << "the checkout stays at the signed commit";

  upstream->sign_commits(mallory);
  const auto mallorys = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"m\"\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  EXPECT_NE(last_error(worker).find("commit " + mallorys.substr(0, 12) +
                                    " is signed by a key that is not one of this service's signers"),
            std::string::npos)
      << last_error(worker);
  EXPECT_EQ(hash_of(worker), signed_head);
  const auto history = worker.run(Verb::HISTORY);
  EXPECT_NE(history.out.find(mallorys.substr(0, 12) + "  refused"), std::string::npos) << history.out;

  upstream->sign_commits(alice);
  const auto next = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"a2\"\n"}});
  const auto pulled = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pulled.exit_status, 0u) << pulled.err;
  EXPECT_EQ(worker.state(), ServiceState::OK) << last_error(worker);
  EXPECT_EQ(hash_of(worker), next);
}

// Who may run commands is decided by signed commits only: a key added by an unsigned commit
// counts for nothing, the same key in a signed one counts.
TEST_F(SignedCommitTest, KeysComeFromSignedCommitsOnly) {
  WorkerHarness worker(upstream->path(), with_signers());
  start(worker);
  const auto comments = [&] {
    auto keys = worker.client().authorizedKeysRequest().send().wait(worker.io().waitScope);
    std::string out;
    for (auto key : keys.getKeys()) out += std::string(key.getComment().cStr()) + ";";
    return out;
  };
  const auto before = comments();
  EXPECT_EQ(before.find("mallory"), std::string::npos) << before;
  upstream->sign_commits("");
  upstream->commit({{"ssh/mallory.pub", read_file(mallory + ".pub")}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(comments(), before) << "an unsigned commit adds no key";
  upstream->sign_commits(alice);
  const auto with_key = upstream->commit({{"README", "signed again\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_NE(comments().find("mallory"), std::string::npos) << "signed by alice, the key counts";

  // Alice removes the key; the branch is then force-pushed back to her older commit that still
  // lists it. Signed, but not forward: the key stays removed (and the commit is not deployed).
  upstream->commit({{"ssh/mallory.pub", std::nullopt}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(comments().find("mallory"), std::string::npos);
  ASSERT_EQ(run_process({"/usr/bin/git", "-C", upstream->path(), "update-ref", "refs/heads/main", with_key}).exit_code,
            0);
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  EXPECT_EQ(comments().find("mallory"), std::string::npos) << "an older signed commit brings no removed key back";
}

// A signature copied onto other bytes (the message changed, the signature kept) is found to be
// alice's by its key, and still refused: -Y verify checks it over the commit as it is.
TEST_F(SignedCommitTest, ASignatureOverOtherBytesIsRefused) {
  WorkerHarness worker(upstream->path(), with_signers());
  start(worker);
  ASSERT_EQ(hash_of(worker), signed_head);
  const auto genuine = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"g\"\n"}});
  auto object = run_process({"/usr/bin/git", "-C", upstream->path(), "cat-file", "commit", genuine}).out;
  const auto message = object.rfind("\nchange\n");
  ASSERT_NE(message, std::string::npos) << object;
  object.replace(message, 8, "\nchanged by mallory\n");
  const auto forged =
      run_process({"/usr/bin/git", "-C", upstream->path(), "hash-object", "-t", "commit", "-w", "--stdin"}, object);
  ASSERT_EQ(forged.exit_code, 0) << forged.err;
  const std::string forged_hash = forged.out.substr(0, 40);
  ASSERT_EQ(
      run_process({"/usr/bin/git", "-C", upstream->path(), "update-ref", "refs/heads/main", forged_hash}).exit_code, 0);
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  EXPECT_NE(last_error(worker).find("the signature of commit " + forged_hash.substr(0, 12) +
                                    " by alice@example.org does not verify"),
            std::string::npos)
      << last_error(worker);
  EXPECT_EQ(hash_of(worker), signed_head);
}

// A head that does not descend from the deployed commit (a force-push that could bring back an
// older signed commit) waits for an operator; a rollback to it, then unfreeze, is that word.
TEST_F(SignedCommitTest, AForcePushWaitsForAnOperator) {
  WorkerHarness worker(upstream->path(), with_signers());
  start(worker);
  ASSERT_EQ(hash_of(worker), signed_head);
  const auto rewritten = upstream->rewrite_last({{"compose.yaml", kCompose + "    environment:\n      V: \"r\"\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  EXPECT_NE(last_error(worker).find("upstream " + rewritten.substr(0, 12) + " does not descend from the deployed " +
                                    signed_head.substr(0, 12)),
            std::string::npos)
      << last_error(worker);
  EXPECT_EQ(hash_of(worker), signed_head);

  const auto pinned = worker.run(Verb::ROLLBACK, {rewritten});
  ASSERT_EQ(pinned.exit_status, 0u) << pinned.err;
  const auto unfrozen = worker.run(Verb::UNFREEZE);
  ASSERT_EQ(unfrozen.exit_status, 0u) << unfrozen.err;
  EXPECT_EQ(worker.state(), ServiceState::OK) << last_error(worker);
  EXPECT_EQ(hash_of(worker), rewritten);
}

TEST_F(SignedCommitTest, AllowForcePushFollowsARewrittenBranch) {
  WorkerHarness worker(upstream->path(), with_signers(true));
  start(worker);
  ASSERT_EQ(hash_of(worker), signed_head);
  const auto rewritten = upstream->rewrite_last({{"compose.yaml", kCompose + "    environment:\n      V: \"r\"\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::OK) << last_error(worker);
  EXPECT_EQ(hash_of(worker), rewritten);
}

// Without signers, nothing changes: unsigned commits and force-pushes are followed as before.
TEST_F(SignedCommitTest, WithoutSignersUnsignedCommitsAndForcePushesAreFollowed) {
  WorkerHarness worker(upstream->path());
  start(worker);
  upstream->sign_commits("");
  const auto rewritten = upstream->rewrite_last({{"compose.yaml", kCompose + "    environment:\n      V: \"r\"\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::OK) << last_error(worker);
  EXPECT_EQ(hash_of(worker), rewritten);
}

// The first deploy has nothing to go back to: BROKEN, with the reason, and the containers left.
TEST_F(WorkerTest, AFirstDeployThatFailsItsHealthGateIsBroken) {
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      MODE: exits-at-once\n"}});
  WorkerHarness worker(upstream->path());
  start(worker);
  EXPECT_EQ(worker.state(), ServiceState::BROKEN);
  auto status = worker.client().statusRequest().send().wait(worker.io().waitScope);
  const std::string error = status.getStatus().getLastError().cStr();
  EXPECT_NE(error.find("exited with code 3; no earlier good deploy to go back to"), std::string::npos) << error;
  EXPECT_EQ(count(worker.calls(), " down"), 0u) << worker.calls();
}

// A refusal about where a path leads always counts, even when the live tree has the same words:
// "cannot be resolved" does not say what the path led to when the containers were created.
TEST_F(WorkerTest, ABindSourceThatCannotBeResolvedInTheNewTreeHoldsTheCommitBack) {
  WorkerHarness worker(upstream->path());
  // Absolute, as compose config writes it (the stand-in's config prints the file as it is).
  upstream->commit({{"compose.yaml", kCompose + "    volumes:\n      - " + worker.checkout_dir() + "/data:/data\n"},
                    {"data/.keep", ""}});
  start(worker);
  ASSERT_EQ(worker.state(), ServiceState::OK) << worker.worker_log();
  // Something turned the live data/ into a loop; the new commit makes it one too, and its own
  // compose file no longer binds it.
  std::filesystem::remove_all(worker.checkout_dir() + "/data");
  std::filesystem::create_symlink("data", worker.checkout_dir() + "/data");
  upstream->commit({{"compose.yaml", kCompose}, {"data/.keep", std::nullopt}});
  upstream->commit_symlink("data", "data");
  auto pull = worker.run(Verb::GIT_PULL);
  EXPECT_EQ(pull.exit_status, 1u) << pull.out;
  auto status = worker.client().statusRequest().send().wait(worker.io().waitScope);
  const std::string error = status.getStatus().getLastError().cStr();
  EXPECT_NE(error.find("the model the containers run would be refused in this commit"), std::string::npos) << error;
  EXPECT_NE(error.find("cannot be resolved"), std::string::npos) << error;
}

// A restarted worker reads the tracked head's keys on its git thread; until then it has none.
// "None yet" must never be an answer: a gateway asking at that moment would drop the keys it
// holds for an empty list (seen under ASan when a worker was killed fifty times in a row).
TEST_F(WorkerTest, ARestartedWorkerNeverAnswersWithKeysNotReadYet) {
  WorkerHarness worker(upstream->path());
  start(worker);
  for (int round = 0; round < 5; ++round) {
    worker.stop();
    worker.start();
    auto request = worker.client().authorizedKeysRequest();
    request.setAfter(1000);  // a generation the old worker had reached
    auto keys = request.send().wait(worker.io().waitScope);
    EXPECT_NE(keys.getGeneration(), 0u) << "round " << round;
    EXPECT_EQ(keys.getKeys().size(), 1u) << "round " << round;
  }
}

TEST_F(WorkerTest, RollbackPinsAnAbbreviatedCommit) {
  WorkerHarness worker(upstream->path());
  start(worker);
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"5\"\n"}});
  worker.run(Verb::GIT_PULL);
  auto rollback = worker.run(Verb::ROLLBACK, {first_commit.substr(0, 8)});
  EXPECT_EQ(rollback.exit_status, 0u) << rollback.err;
  EXPECT_EQ(worker.state(), ServiceState::ROLLBACK);
  EXPECT_EQ(worker.run(Verb::GIT_HASH).out, first_commit + "\n");
  auto bad = worker.run(Verb::ROLLBACK, {"deadbeef"});
  EXPECT_EQ(bad.exit_status, 1u);
  EXPECT_EQ(worker.state(), ServiceState::ROLLBACK) << "a bad rollback changes nothing";
}

TEST_F(WorkerTest, UnreachableUpstreamGoesDiffWithoutTouchingContainers) {
  WorkerHarness worker(upstream->path());
  start(worker);
  std::filesystem::rename(upstream->path(), upstream->path() + ".gone");
  worker.clear_calls();
  for (int i = 0; i < 3; ++i) worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::DIFF);
  EXPECT_EQ(worker.calls(), "") << "git trouble never reaches docker";
  std::filesystem::rename(upstream->path() + ".gone", upstream->path());
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(worker.state(), ServiceState::OK);
}

TEST_F(WorkerTest, RefusesPeersThatAreNeitherRootNorTheGateway) {
  WorkerHarness worker(upstream->path());
  start(worker);
  chmod(worker.socket_path().c_str(), 0666);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // As nobody: the connection is accepted by the kernel, then closed by the worker unanswered.
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", worker.socket_path().c_str());
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) _exit(11);
    char byte;
    const ssize_t n = read(fd, &byte, 1);
    _exit(n == 0 ? 0 : 12);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "exit " << WEXITSTATUS(status);
  EXPECT_NE(worker.worker_log().find("refused a connection from uid 65534"), std::string::npos) << worker.worker_log();
}

TEST_F(WorkerTest, IgnoreTrueMeansUpWithoutDown) {
  WorkerHarness worker(upstream->path(), [](rpc::ServiceSettings::Builder s) { s.setIgnore(true); });
  start(worker);
  worker.clear_calls();
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"6\"\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(count(worker.calls(), " down"), 0u) << worker.calls();
  EXPECT_EQ(count(worker.calls(), " up -d"), 1u) << worker.calls();
}

TEST_F(WorkerTest, StdoutAndStderrStayApart) {
  WorkerHarness worker(upstream->path());
  start(worker);
  auto up = worker.run(Verb::UP);
  EXPECT_EQ(up.exit_status, 0u);
  EXPECT_EQ(up.out, "");
  EXPECT_EQ(up.err, "Creating stand-in ... done\n");
}

TEST_F(WorkerTest, CaddyImportIsWrittenAndReloadRunsOnlyWhenItChanges) {
  const std::string import = "example.org {\n\treverse_proxy web:8080\n}\n";
  WorkerHarness worker(upstream->path(), [&](rpc::ServiceSettings::Builder s) {
    s.setImportPath("caddy/Caddyfile-import");
    s.setImportContent(import);
    s.setReload("localhost:web//exec caddy caddy reload --config /etc/caddy/Caddyfile");
  });
  start(worker);
  std::ifstream written(worker.checkout_dir() + "/caddy/Caddyfile-import");
  std::stringstream text;
  text << written.rdbuf();
  EXPECT_EQ(text.str(), import);
  // The reload follows up -d in the same cycle, after the state already reads OK.
  ASSERT_TRUE(worker.wait_for([&] { return worker.calls().find(" exec -T caddy") != std::string::npos; }))
      << worker.calls();
  const auto calls = worker.calls();
  const auto up = calls.find(" up -d |");
  const auto reload = calls.find(" exec -T caddy caddy reload --config /etc/caddy/Caddyfile |");
  ASSERT_NE(reload, std::string::npos) << calls;
  EXPECT_LT(up, reload) << "reload after up";

  worker.clear_calls();
  worker.run(Verb::GIT_PULL);
  EXPECT_EQ(count(worker.calls(), " exec "), 0u) << "unchanged import: no reload";
  // A commit to the repository does not remove the generated (untracked) file.
  upstream->commit({{"README", "again\n"}});
  worker.run(Verb::GIT_PULL);
  EXPECT_TRUE(std::filesystem::exists(worker.checkout_dir() + "/caddy/Caddyfile-import"));
  EXPECT_EQ(count(worker.calls(), " exec "), 0u);
}

// The gateway's side of a stalled client: a sink that takes the first chunk and never
// finishes it. Flow control must stop the worker reading, and so stop the producer.
class StalledSink final : public rpc::OutputSink::Server {
 public:
  explicit StalledSink(std::size_t& received) : received_(received) {}
  kj::Promise<void> stdout(StdoutContext context) override {
    received_ += context.getParams().getData().size();
    auto pair = kj::newPromiseAndFulfiller<void>();
    stalled_.push_back(kj::mv(pair.fulfiller));
    return kj::mv(pair.promise);
  }

 private:
  std::size_t& received_;
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> stalled_;
};

TEST_F(WorkerTest, ASlowReaderSlowsTheProducerAndMemoryStaysBounded) {
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.touch("logs-flood");
  std::size_t received = 0;
  auto request = worker.client().runRequest();
  request.setVerb(Verb::LOGS);
  request.initArgs(1).set(0, "-f");
  request.setOutput(kj::heap<StalledSink>(received));
  auto call = request.send();
  pid_t producer = 0;
  ASSERT_TRUE(worker.wait_for([&] {
    std::ifstream(worker.standin_dir() + "/logs.pid") >> producer;
    return producer > 0 && received > 0;
  }));
  worker.sleep(1000ms);
  const long rss_before = rss_kib(worker.pid());
  const long written_before = bytes_written(producer);
  worker.sleep(1500ms);
  const long rss_after = rss_kib(worker.pid());
  const long written_after = bytes_written(producer);
  // Unthrottled, `cat /dev/zero` writes gigabytes a second.
  EXPECT_LT(written_after, 8l << 20) << "the producer kept writing: " << written_after << " bytes";
  EXPECT_EQ(written_after, written_before) << "the producer is blocked";
  EXPECT_LT(rss_after - rss_before, 4096) << "the worker's memory grew by " << (rss_after - rss_before) << " KiB";
  EXPECT_LT(received, 8u << 20);
}

TEST_F(WorkerTest, ReadVerbsRunAlongsideAMutatingOneAndMutatingOnesQueue) {
  WorkerHarness worker(upstream->path());
  start(worker);
  std::ofstream(worker.standin_dir() + "/up-sleep") << "2";
  std::string exec_out, exec_err, up_out, up_err;
  auto exec_request = worker.client().runRequest();
  exec_request.setVerb(Verb::UP);
  exec_request.setOutput(kj::heap<CollectingSink>(exec_out, exec_err));
  const auto started = std::chrono::steady_clock::now();
  auto exec_call = exec_request.send();
  worker.sleep(200ms);

  // Read verbs, and exec (which changes a container, not the deployment), do not wait.
  auto ps = worker.run(Verb::PS);
  EXPECT_EQ(ps.exit_status, 0u);
  auto exec = worker.run(Verb::EXEC, {"web", "true"});
  EXPECT_EQ(exec.exit_status, 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms) << "ps or exec waited for the up";

  // A mutating verb does.
  auto up_request = worker.client().runRequest();
  up_request.setVerb(Verb::DOWN);
  up_request.setOutput(kj::heap<CollectingSink>(up_out, up_err));
  auto up_call = up_request.send();
  auto exec_result = exec_call.wait(worker.io().waitScope);
  up_call.wait(worker.io().waitScope);
  EXPECT_EQ(exec_result.getExitStatus(), 0u);
  const auto calls = worker.calls();
  const auto up_line = calls.rfind(" up -d |");
  const auto down_line = calls.rfind(" down |");
  ASSERT_NE(up_line, std::string::npos);
  ASSERT_NE(down_line, std::string::npos);
  EXPECT_GT(down_line, up_line);
  // The down started only after the up's two seconds were over.
  const auto stamp = [&](std::size_t at) { return std::stoll(calls.substr(calls.find("| t=", at) + 4)); };
  EXPECT_GE(stamp(down_line) - stamp(up_line), 1'900'000'000ll) << calls;
}

TEST_F(WorkerTest, WhatRunsIsTheModelThatPassedThePolicy) {
  WorkerHarness worker(upstream->path());
  start(worker);
  // Something with write access to the checkout (a container with it mounted, say) changes
  // the compose file after it was judged.
  std::ofstream(worker.checkout_dir() + "/compose.yaml") << kCompose << "    privileged: true\n";
  worker.clear_calls();
  auto restart = worker.run(Verb::RESTART);
  EXPECT_EQ(restart.exit_status, 0u) << restart.err;
  EXPECT_NE(worker.calls().find("-f " + worker.state_dir() + "/compose.validated.yaml restart |"), std::string::npos)
      << worker.calls();
  auto up = worker.run(Verb::UP);
  EXPECT_EQ(up.exit_status, 1u) << "up judges the file again";
  EXPECT_NE(up.err.find("privileged"), std::string::npos) << up.err;
  EXPECT_EQ(count(worker.calls(), " up -d"), 0u) << worker.calls();
}

TEST_F(WorkerTest, ACancelledGitPullStillFinishesItsCycle) {
  WorkerHarness worker(upstream->path());
  start(worker);
  std::ofstream(worker.standin_dir() + "/down-sleep") << "1";
  upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"7\"\n"}});
  worker.clear_calls();
  {
    std::string out, err;
    auto request = worker.client().runRequest();
    request.setVerb(Verb::GIT_PULL);
    request.setOutput(kj::heap<CollectingSink>(out, err));
    auto call = request.send();
    ASSERT_TRUE(worker.wait_for([&] { return worker.calls().find(" down |") != std::string::npos; }));
    // Ctrl-C between down and up.
  }
  EXPECT_TRUE(worker.wait_for([&] { return worker.calls().find(" up -d |") != std::string::npos; }))
      << "the service was left down:\n"
      << worker.calls();
  EXPECT_TRUE(worker.wait_for([&] { return worker.state() == ServiceState::OK; }));
}

TEST_F(WorkerTest, StartAndRestartRespectTheStopFile) {
  WorkerHarness worker(upstream->path());
  start(worker);
  std::ofstream(worker.stop_file()) << "";
  worker.clear_calls();
  for (auto verb : {Verb::START, Verb::RESTART, Verb::UP}) {
    auto result = worker.run(verb);
    EXPECT_EQ(result.exit_status, 1u);
    EXPECT_NE(result.err.find("remove it to bring the service up"), std::string::npos) << result.err;
  }
  EXPECT_EQ(worker.calls(), "");
}

TEST_F(WorkerTest, KeysAreServedFromTheCheckoutDuringAGitOutage) {
  auto worker = std::make_unique<WorkerHarness>(upstream->path());
  start(*worker);
  worker->stop();
  std::filesystem::rename(upstream->path(), upstream->path() + ".gone");
  worker->start();
  auto keys = worker->client().authorizedKeysRequest().send().wait(worker->io().waitScope);
  EXPECT_EQ(keys.getKeys().size(), 1u) << "developers can still get in to see what is wrong";
  std::filesystem::rename(upstream->path() + ".gone", upstream->path());
}

TEST_F(WorkerTest, SigtermExitsCleanlyAndLeavesTheContainersAlone) {
  WorkerHarness worker(upstream->path());
  start(worker);
  worker.clear_calls();
  EXPECT_EQ(worker.stop(), 0);
  EXPECT_EQ(worker.calls(), "") << "no docker command on the way out";
  EXPECT_NE(worker.worker_log().find("stopping (containers keep running)"), std::string::npos);
}

TEST_F(WorkerTest, RunsFromInheritedFdsAsPgodStartsIt) {
  WorkerHarness worker(upstream->path());
  worker.start({}, /*inherited=*/true);
  ASSERT_TRUE(worker.wait_for([&] { return worker.state() != ServiceState::STARTING; })) << worker.worker_log();
  EXPECT_EQ(worker.state(), ServiceState::OK) << worker.worker_log();
  EXPECT_EQ(worker.run(Verb::GIT_HASH).out, first_commit + "\n");
}

TEST_F(WorkerTest, UsesTheComposePluginWhenItAnswersUnlessForced) {
  {
    WorkerHarness worker(upstream->path());
    worker.touch("plugin");
    start(worker);
    EXPECT_NE(worker.calls().find("docker compose -p web -f "), std::string::npos) << worker.calls();
  }
  {
    WorkerHarness worker(upstream->path());
    worker.touch("plugin");
    worker.start({"--compose", "standalone"});
    ASSERT_TRUE(worker.wait_for([&] { return worker.state() != ServiceState::STARTING; }));
    EXPECT_EQ(worker.calls().find("docker compose"), std::string::npos) << worker.calls();
    EXPECT_NE(worker.calls().find("docker-compose -p web -f "), std::string::npos) << worker.calls();
  }
}

TEST_F(WorkerTest, PollsUpstreamByItself) {
  // A short duration: a new commit is picked up without anyone asking (duration + jitter).
  WorkerHarness worker(upstream->path(), [](rpc::ServiceSettings::Builder s) { s.setPollIntervalNs(200'000'000); });
  start(worker);
  const auto second = upstream->commit({{"compose.yaml", kCompose + "    environment:\n      V: \"8\"\n"}});
  EXPECT_TRUE(worker.wait_for([&] { return worker.run(Verb::GIT_HASH).out == second + "\n"; }, 5s));
  EXPECT_TRUE(worker.wait_for([&] { return worker.calls().find(" down |") != std::string::npos; }, 5s));
}

TEST_F(WorkerTest, FollowersHaveSlotsOfTheirOwnAndNeverStarveShortReads) {
  WorkerHarness worker(upstream->path());
  start(worker);
  std::vector<std::unique_ptr<std::string>> buffers;
  std::vector<capnp::RemotePromise<rpc::Worker::RunResults>> calls;
  for (int i = 0; i < 16; ++i) {
    buffers.push_back(std::make_unique<std::string>());
    buffers.push_back(std::make_unique<std::string>());
    auto request = worker.client().runRequest();
    request.setVerb(Verb::LOGS);
    request.initArgs(1).set(0, "-f");
    request.setOutput(kj::heap<CollectingSink>(*buffers[buffers.size() - 2], *buffers.back()));
    calls.push_back(request.send());
  }
  ASSERT_TRUE(worker.wait_for([&] { return count(worker.calls(), " logs --follow") == 16; }));
  // A 17th follower is refused at once: waiting behind commands that may never end is pointless.
  auto one_more = worker.run(Verb::LOGS, {"-f"});
  EXPECT_EQ(one_more.exit_status, 500u);
  EXPECT_EQ(one_more.message, "too many logs -f and exec at once for this service (at most 16)");
  // Short reads are not held up by them.
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(worker.run(Verb::PS).exit_status, 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  calls.erase(calls.begin());  // a follower leaves: its slot is free again
  worker.sleep(500ms);         // (the cancellation reaches the worker)
  std::string out, err;
  auto request = worker.client().runRequest();
  request.setVerb(Verb::LOGS);
  request.initArgs(1).set(0, "-f");
  request.setOutput(kj::heap<CollectingSink>(out, err));
  calls.push_back(request.send());
  EXPECT_TRUE(worker.wait_for([&] { return count(worker.calls(), " logs --follow") == 17; })) << worker.calls();
  calls.clear();
}

TEST_F(WorkerTest, ShortReadsBeyondTheLimitWaitTheirTurn) {
  WorkerHarness worker(upstream->path());
  start(worker);
  std::ofstream(worker.standin_dir() + "/ps-delay") << "1\n";
  // Twelve slow `ps` at once: eight run, four wait for a slot, and all twelve succeed.
  std::vector<std::pair<std::string, std::string>> outputs(12);
  std::vector<capnp::RemotePromise<rpc::Worker::RunResults>> calls;
  const auto started = std::chrono::steady_clock::now();
  for (auto& [out, err] : outputs) {
    auto request = worker.client().runRequest();
    request.setVerb(Verb::PS);
    request.setOutput(kj::heap<CollectingSink>(out, err));
    calls.push_back(request.send());
  }
  for (auto& call : calls) {
    auto result = call.wait(worker.io().waitScope);
    EXPECT_EQ(result.getExitStatus(), 0u) << result.getMessage().cStr();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1900ms) << "more than eight ran at once";
  for (const auto& [out, err] : outputs) EXPECT_NE(out.find("Up"), std::string::npos) << out << err;
}

}  // namespace
}  // namespace pgod::test
