// Fault: workers killed with SIGKILL (an admin, the OOM killer), fifty times in a row each.
//
// pgod as root with three services (three users), the real gateway, the recording stand-in docker.
// Each kill must be answered by a new worker within a second: a new PID listed as running by
// the supervisor AND an answer on the service's socket, on a connection opened after the old
// worker had exited (so only the new one can have answered). Nothing may run `down`.
//
// Meanwhile the other services must answer every time they are asked. `ping` cannot show that:
// the gateway answers it itself without touching the worker (GatewayTest.PingAnswersPong...
// checks it never reaches docker). So two probes run beside the kills, both reaching the other
// workers: a thread calling Worker.status() on their sockets on a fresh connection every ~10 ms,
// and a thread running `ssh other//status` through the real gateway, which the gateway forwards
// to the worker (the output is the worker's own status text).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "fault_support.h"
#include "git_fixture.h"
#include "pgod_harness.h"

namespace pgod::test::faults {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kKills = 50;
constexpr auto kRestartLimit = 1s;  // the requirement, per kill

// Probes the given services until stopped; every probe must succeed.
class Prober {
 public:
  Prober(const PgodHarness& pgod, int ssh_port, std::string key, std::vector<std::string> services)
      : pgod_(pgod), ssh_port_(ssh_port), key_(std::move(key)), services_(std::move(services)) {
    rpc_ = std::thread([this]() { rpc_loop(); });
    ssh_ = std::thread([this]() { ssh_loop(); });
  }
  ~Prober() { stop(); }
  void stop() {
    stopping_ = true;
    if (rpc_.joinable()) rpc_.join();
    if (ssh_.joinable()) ssh_.join();
  }
  int rpc_answers() const { return rpc_ok_; }
  int ssh_answers() const { return ssh_ok_; }
  std::vector<std::string> failures() {
    std::lock_guard lock(mutex_);
    return failures_;
  }

 private:
  void fail(std::string what) {
    std::lock_guard lock(mutex_);
    failures_.push_back(std::move(what));
  }
  void rpc_loop() {
    while (!stopping_) {
      for (const auto& name : services_) {
        const auto answer = worker_status(pgod_.rundir() + "/workers/" + name + ".sock", 2s);
        if (answer.answered)
          ++rpc_ok_;
        else
          fail("rpc " + name + ": " + answer.failure);
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  void ssh_loop() {
    while (!stopping_) {
      for (const auto& name : services_) {
        const auto answer = ssh(ssh_port_, key_, name + "//status");
        if (answer.exit_code == 0 && answer.out.starts_with("state:"))
          ++ssh_ok_;
        else
          fail("ssh " + name + "//status: exit " + std::to_string(answer.exit_code) + ": " + answer.err + answer.out);
      }
    }
  }

  const PgodHarness& pgod_;
  const int ssh_port_;
  const std::string key_;
  const std::vector<std::string> services_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> rpc_ok_{0}, ssh_ok_{0};
  std::mutex mutex_;
  std::vector<std::string> failures_;
  std::thread rpc_, ssh_;
};

class WorkerKillFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = make_key(keys_.path(), "dev");
    std::string config;
    for (const auto& [name, user] : services_) {
      pgod_.upstream(name).commit({{"ssh/dev.pub", read_file(key_ + ".pub")}}, "a key");
      config += PgodHarness::service_toml(name, user->name, pgod_.upstream(name).path());
    }
    pgod_.write_config(config);
    ports_ = {free_loopback_port(), free_loopback_port()};
    pgod_.start(ports_.pgod_args());
    ASSERT_TRUE(pgod_.wait_ready({"a", "b", "c"})) << pgod_.log();
    for (const auto& [name, user] : services_)  // the keys reach the gateway from the workers
      ASSERT_TRUE(PgodHarness::wait_for([&]() { return ssh(ports_.ssh, key_, name + "//status").exit_code == 0; }, 20s))
          << name << "\n"
          << pgod_.log();
  }

  std::string socket(const std::string& name) const { return pgod_.rundir() + "/workers/" + name + ".sock"; }

  // SIGKILLs the victim's worker and waits until a new one answers on its socket; records how
  // long that took.
  void kill_and_wait_back(const std::string& victim, int kill_number, std::vector<Millis>& times) {
    const pid_t old = pgod_.worker_pid(victim);
    ASSERT_GT(old, 0) << victim << " kill " << kill_number << "\n" << pgod_.log();
    const auto killed = Clock::now();
    ASSERT_EQ(kill(old, SIGKILL), 0);
    while (!has_exited(old) && Clock::now() - killed < 5s) std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(has_exited(old)) << victim << " " << old;
    bool back = false;
    std::string why;
    while (!back && Clock::now() - killed < 5s) {
      const auto answer = worker_status(socket(victim), 5s);
      if (!answer.answered) {
        why = answer.failure;
        std::this_thread::sleep_for(5ms);
        continue;
      }
      const pid_t now = pgod_.worker_pid(victim);
      back = now != 0 && now != old;
      if (!back) std::this_thread::sleep_for(2ms);
    }
    const auto took = std::chrono::duration_cast<Millis>(Clock::now() - killed);
    ASSERT_TRUE(back) << victim << " kill " << kill_number << " not back after " << took.count() << " ms: " << why
                      << "\n"
                      << pgod_.log();
    EXPECT_LE(took, kRestartLimit) << victim << " kill " << kill_number;
    times.push_back(took);
  }

  TempDir keys_;
  std::string key_;
  const std::vector<std::pair<std::string, const TestUser*>> services_ = {
      {"a", &service_user_a()}, {"b", &service_user_b()}, {"c", &service_user_c()}};
  GatewayPorts ports_;
  PgodHarness pgod_;
};

TEST_F(WorkerKillFaultTest, EachWorkerKilledFiftyTimesIsBackWithinASecondWhileTheOthersAnswerEveryCall) {
  std::vector<Millis> all;
  for (std::size_t v = 0; v < services_.size(); ++v) {
    const std::string victim = services_[v].first;
    std::vector<std::string> others;
    std::map<std::string, pid_t> other_pids;
    for (const auto& [name, user] : services_)
      if (name != victim) {
        others.push_back(name);
        other_pids[name] = pgod_.worker_pid(name);
      }
    Prober prober(pgod_, ports_.ssh, key_, others);
    // Kills land anywhere in the new worker's first cycle: start-up, the git sync, compose.
    std::mt19937 random(static_cast<unsigned>(v + 1));
    std::uniform_int_distribution<int> pause_ms(0, 150);
    std::vector<Millis> times;
    for (int kill_number = 0; kill_number < kKills; ++kill_number) {
      ASSERT_NO_FATAL_FAILURE(kill_and_wait_back(victim, kill_number, times));
      std::this_thread::sleep_for(Millis(pause_ms(random)));
    }
    prober.stop();
    const auto failures = prober.failures();
    EXPECT_TRUE(failures.empty()) << failures.size() << " probes of " << others[0] << "/" << others[1]
                                  << " failed while " << victim << " was killed; first: " << failures.front() << "\n"
                                  << pgod_.log();
    // The probes really ran throughout (each ssh takes a few tens of ms, each RPC ~1 ms).
    EXPECT_GE(prober.rpc_answers(), 100) << victim;
    EXPECT_GE(prober.ssh_answers(), 10) << victim;
    for (const auto& [name, pid] : other_pids) EXPECT_EQ(pgod_.worker_pid(name), pid) << name << " was not touched";
    const auto figures = spread(times);
    std::printf(
        "[ faults   ] %s: %d SIGKILLs, back in median %.0f ms, max %.0f ms; meanwhile %d RPC and %d ssh "
        "probes of the others, all answered\n",
        victim.c_str(), kKills, figures.median_ms, figures.max_ms, prober.rpc_answers(), prober.ssh_answers());
    all.insert(all.end(), times.begin(), times.end());
  }
  const auto figures = spread(all);
  RecordProperty("restart_median_ms", std::to_string(figures.median_ms));
  RecordProperty("restart_max_ms", std::to_string(figures.max_ms));
  std::printf("[ faults   ] all %zu restarts: median %.0f ms, max %.0f ms\n", all.size(), figures.median_ms,
              figures.max_ms);

  // The supervisor's account: each SIGKILL counted, none held back by the backoff.
  for (const auto& [name, user] : services_) {
    auto row = pgod_.worker(name);
    ASSERT_TRUE(row.has_value()) << name;
    EXPECT_EQ(row->restarts, static_cast<unsigned>(kKills)) << name;
    EXPECT_EQ(row->last_exit, "signal 9") << name;
    EXPECT_EQ(row->state, "running") << name;
  }
  // Killed anywhere in their cycle (a git fetch, a compose call), the workers still track their
  // repositories: a new commit is fetched and deployed by each.
  for (const auto& [name, user] : services_) {
    const auto head = pgod_.upstream(name).commit({{"README", "after the kills\n"}}, "after");
    const auto pulled = ssh(ports_.ssh, key_, name + "//git pull");
    EXPECT_EQ(pulled.exit_code, 0) << name << ": " << pulled.err << pulled.out << pgod_.log();
    const auto answer = worker_status(socket(name), 5s);
    EXPECT_EQ(answer.state, "OK") << name << ": " << answer.last_error << answer.failure;
    EXPECT_EQ(answer.hash, head) << name;
  }
  EXPECT_EQ(pgod_.calls().find(" down"), std::string::npos) << "a worker restart never downs containers";
  // Nor do the kills leave anything behind that a later cycle trips over (a lock file, half a
  // repository): the only warnings are the supervisor's, one per kill.
  std::istringstream lines(pgod_.log());
  for (std::string line; std::getline(lines, line);) {
    const bool warning = line.starts_with("<4>") || line.starts_with("<3>") || line.starts_with("<2>");
    if (warning) {
      EXPECT_TRUE(line.ends_with("] worker signal 9: restarting in 0.0 s")) << line;
    }
  }
}

}  // namespace
}  // namespace pgod::test::faults
