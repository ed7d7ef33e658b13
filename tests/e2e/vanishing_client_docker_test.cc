// Clients of a quiet container's `logs -f` on a real engine, through pgod's gateway, that go
// away: ssh and pgoctl, ended by SIGTERM and by SIGKILL. The real compose `logs` process of the
// project (the docker CLI and its compose plugin, or docker-compose, whichever PGOD_TEST_COMPOSE
// names) is gone within a few seconds each time: nothing keeps following a container for a
// client that left.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "compose_programs.h"
#include "docker_env.h"
#include "gateway_fixture.h"

namespace pgod::test {
namespace {

// A process as /proc shows it: its argv and what it belongs to.
struct ProcessInfo {
  pid_t pid = 0;
  std::vector<std::string> argv;
  std::string parent, group, session, uid;
};

std::string describe(const std::vector<ProcessInfo>& processes) {
  std::ostringstream text;
  for (const auto& process : processes) {
    text << process.pid << " (parent " << process.parent << ", group " << process.group << ", session "
         << process.session << ", uid " << process.uid << "):";
    for (const auto& arg : process.argv) text << " " << arg;
    text << "\n";
  }
  return text.str();
}

// The project's compose `logs` processes: an argv holding `logs` and the project's name as words
// of their own (`docker compose -p NAME -f FILE logs --follow`, the plugin's
// `docker-compose compose -p NAME … logs …`, or docker-compose's). A client's argv holds them only
// inside "NAME//logs -f", so no client counts.
std::vector<ProcessInfo> compose_logs_processes(const std::string& project) {
  std::vector<ProcessInfo> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = read_file("/proc/" + name + "/cmdline");
    std::vector<std::string> argv;
    for (std::size_t begin = 0; begin < cmdline.size();) {
      const auto end = std::min(cmdline.find('\0', begin), cmdline.size());
      argv.push_back(cmdline.substr(begin, end - begin));
      begin = end + 1;
    }
    const auto has = [&](const std::string& word) { return std::find(argv.begin(), argv.end(), word) != argv.end(); };
    if (!has("logs") || !has(project)) continue;
    ProcessInfo info{std::stoi(name), std::move(argv), "", "", "", ""};
    // /proc/PID/stat: "pid (comm) state ppid pgrp session ..." (comm may hold spaces).
    const std::string stat = read_file("/proc/" + name + "/stat");
    std::istringstream rest(stat.substr(std::min(stat.rfind(')') + 2, stat.size())));
    std::string state;
    rest >> state >> info.parent >> info.group >> info.session;
    if (state == "Z") continue;  // ended, waiting to be reaped: nothing of it runs
    info.uid = proc_status(info.pid)["Uid"];
    info.uid = info.uid.substr(0, info.uid.find('\t'));
    found.push_back(std::move(info));
  }
  return found;
}

class VanishingClientDockerTest : public PgoctlGatewayTest {
 protected:
  void TearDown() override {
    for (const auto& id : docker_environment().containers(name_)) docker_environment().docker({"rm", "-f", id});
    docker_environment().docker({"network", "rm", name_ + "_default"});
  }

  // pgod on the real engine with one service whose container prints nothing, and the gateway on
  // loopback; returns once the container runs and the service answers over SSH.
  void start_quiet_service() {
    pgod_.use_real_docker();
    auto& upstream = pgod_.upstream(name_);
    upstream.commit({{"compose.yaml", "services:\n  quiet:\n    image: " + docker_environment().image() +
                                          "\n    command: [\"sleep\", \"3600\"]\n"},
                     {"ssh/dev.pub", read_file(key_a_ + ".pub")}});
    pgod_.write_config(PgodHarness::service_toml(name_, service_user_a().name, upstream.path(),
                                                 "registries = [ \"" + docker_environment().user() + ":" +
                                                     docker_environment().token() + "@" +
                                                     docker_environment().registry() + "\" ]\n"));
    ssh_port_ = free_loopback_port();
    metrics_port_ = free_loopback_port();
    pgod_.start({"--gateway-program", programs_dir() + "/pgod-gateway", "-s", "127.0.0.1:" + std::to_string(ssh_port_),
                 "-m", "127.0.0.1:" + std::to_string(metrics_port_)});
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return docker_environment().containers(name_).size() == 1; }, 180s))
        << pgod_.log();
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_a_, name_ + "//ping").exit_code == 0; }, 30s))
        << pgod_.log();
  }

  std::vector<std::string> follower_argv(bool pgoctl) const {
    if (pgoctl)
      return {PGOCTL_BIN,
              "-p",
              std::to_string(ssh_port_),
              "--known-hosts",
              known_hosts(),
              "-i",
              key_a_,
              "127.0.0.1:" + name_ + "//logs",
              "-f"};
    return ssh_argv(key_a_, name_ + "//logs -f");
  }

  const std::string name_ = "pgodvc" + std::to_string(getpid());
};

// Each way a client goes, one after the other against the same service: a client starts
// `logs -f`, the project's compose logs process appears (it prints nothing: the container is
// quiet), the client gets its signal, and that process is gone within a few seconds.
TEST_F(VanishingClientDockerTest, TheComposeLogsProcessOfAQuietContainerEndsWithItsClient) {
  start_quiet_service();
  ASSERT_EQ(compose_logs_processes(name_).size(), 0u) << describe(compose_logs_processes(name_));
  for (const bool pgoctl : {false, true}) {
    for (const int signal_number : {SIGTERM, SIGKILL}) {
      const std::string how = std::string(pgoctl ? "pgoctl" : "ssh") + " ended by SIG" + sigabbrev_np(signal_number);
      SCOPED_TRACE(how);
      auto client = spawn_background(follower_argv(pgoctl));
      std::vector<ProcessInfo> running;
      ASSERT_TRUE(PgodHarness::wait_for([&]() { return !(running = compose_logs_processes(name_)).empty(); }, 30s))
          << pgod_.log();
      // Through the docker CLI, the compose plugin is a process of its own beside it: both must go.
      const std::size_t expected = compose_under_test() == "plugin" ? 2 : 1;
      EXPECT_TRUE(
          PgodHarness::wait_for([&]() { return (running = compose_logs_processes(name_)).size() >= expected; }, 10s))
          << describe(running);
      ASSERT_TRUE(process_alive(client->pid)) << "the client ended before its signal";
      const auto signalled = std::chrono::steady_clock::now();
      kill(client->pid, signal_number);
      int status = 0;
      EXPECT_TRUE(PgodHarness::wait_for([&]() { return waitpid(client->pid, &status, WNOHANG) == client->pid; }, 5s));
      client->pid = -1;
      const bool gone = PgodHarness::wait_for([&]() { return compose_logs_processes(name_).empty(); }, 5s);
      const auto took =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - signalled);
      EXPECT_TRUE(gone) << "still running " << took.count() << " ms after the client's signal:\n"
                        << describe(compose_logs_processes(name_)) << "running before the signal:\n"
                        << describe(running) << pgod_.log();
      if (gone)
        std::cerr << how << ": " << running.size() << " compose logs process(es) gone " << took.count()
                  << " ms after the signal:\n"
                  << describe(running);
      if (!gone) {
        // Leave nothing behind for the next round.
        for (const auto& process : compose_logs_processes(name_)) kill(process.pid, SIGKILL);
      }
    }
  }
  EXPECT_EQ(docker_environment().containers(name_).size(), 1u) << "the quiet container itself keeps running";
}

}  // namespace
}  // namespace pgod::test
