// Supervisor benchmark (not a test): figures for the docs, each beside a reference measured in
// the same run, because these machines are noisy. Run as root (it creates test users).
//
//   1. Start to answering: pgod is started with one service; the time until a `status` call on
//      the worker's socket is answered (pgod's exec and config check, the directories, the
//      socket, fork, confinement: groups, uids, no_new_privs, seccomp; the worker's exec and
//      start-up). Reference: pgod-worker started by hand (posix_spawn as root, no confinement,
//      the same inherited socket and settings fd), until its first `status` answer.
//   2. Memory: PSS (from /proc/PID/smaps_rollup) of each idle worker with N services (one test
//      user per service, the stand-in docker), of pgod itself and of the gateway pgod runs.
//      Reference: an idle OpenSSH sshd listening on loopback.
//   3. Idle CPU with the largest N: utime + stime (/proc/PID/stat) of pgod, every worker and the
//      gateway over an idle window once everything has settled, as % of one core. No poll falls
//      in the window (the first poll after start comes -t, 5 min, or later). Reference: the idle
//      sshd over the same window.
//
//   build/tests/supervisor_bench [runs] [idle-seconds] [services ...]     (20 30 50 100)
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include "bench_common.h"
#include "git_fixture.h"
#include "pgod_harness.h"
#include "worker.capnp.h"
#include "worker_harness.h"

using namespace pgod::test;
using pgod::bench::figure;
using pgod::bench::median;
using pgod::bench::pss_kib;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// One `status` call on a worker socket; blocks until a worker accepts and answers.
void worker_status(const std::string& socket_path) {
  auto io = kj::setupAsyncIo();
  auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", socket_path.c_str())).wait(io.waitScope);
  auto stream = address->connect().wait(io.waitScope);
  capnp::TwoPartyClient client(*stream);
  client.bootstrap().castAs<pgod::rpc::Worker>().statusRequest().send().wait(io.waitScope);
}

// Connects until the socket exists and a worker answers `status` on it.
void status_when_up(const std::string& socket_path) {
  for (;;) {
    try {
      worker_status(socket_path);
      return;
    } catch (const kj::Exception&) {
      std::this_thread::sleep_for(200us);  // not bound yet
    }
  }
}

// 1. Start to answering, `runs` times on each side (pgod, then by hand), each from scratch.
void fork_to_answer(int runs) {
  std::vector<double> supervised;
  for (int i = 0; i < runs; ++i) {
    PgodHarness pgod;
    pgod.write_config(PgodHarness::service_toml("web", service_user_a().name, pgod.upstream("web").path()));
    const auto start = Clock::now();
    pgod.start({}, /*wait=*/false);
    status_when_up(pgod.rundir() + "/workers/web.sock");
    supervised.push_back(ms_since(start));
    pgod.stop();
  }

  TempDir repos;
  GitUpstream upstream(repos.path());
  upstream.commit({{"compose.yaml", "services:\n  web:\n    image: busybox\n"}});
  std::vector<double> by_hand;
  for (int i = 0; i < runs; ++i) {
    WorkerHarness worker(upstream.path());
    const auto start = Clock::now();
    worker.start({}, /*inherited=*/true);
    worker.state();  // a status call on the harness's own connection
    by_hand.push_back(ms_since(start));
    worker.stop();
  }
  std::printf("start -> worker answers status (%d runs, median)\n", runs);
  std::printf("  pgod: exec, config, directories, socket, fork, confine, exec worker: %7.2f ms\n", median(supervised));
  std::printf("  reference: pgod-worker spawned by hand, unconfined:                  %7.2f ms  (ratio %.2fx)\n",
              median(by_hand), median(supervised) / median(by_hand));
  figure("start_pgod_ms", supervised);
  figure("start_byhand_ms", by_hand);
}

// Every named worker runs and has logged the end of its first cycle (one listServices call and
// one read of the log per try: PgodHarness::wait_ready asks once per name).
bool all_ready(const PgodHarness& pgod, const std::vector<std::string>& names) {
  std::set<std::string> running;
  for (const auto& row : pgod.workers())
    if (row.state == "running") running.insert(row.name);
  const auto log = pgod.log();
  return std::all_of(names.begin(), names.end(), [&](const std::string& name) {
    return running.count(name) != 0 && log.find("[" + name + "] state STARTING -> OK") != std::string::npos;
  });
}

double ticks_to_ms(std::uint64_t ticks) {
  return static_cast<double>(ticks) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// pgod with `count` idle services (one test user each, the stand-in docker) and the gateway on
// loopback ports, once every worker has ended its first cycle, and 5 s more to settle; the
// seconds until they were all ready.
double start_services(PgodHarness& pgod, const pgod::bench::BenchUsers& users, int count) {
  std::string config;
  std::vector<std::string> names;
  for (int i = 0; i < count; ++i) {
    names.push_back("svc" + std::to_string(i));
    config += PgodHarness::service_toml(names.back(), users.users()[i].name, pgod.upstream("web").path());
  }
  pgod.write_config(config);
  pgod.start({"--gateway-program", programs_dir() + "/pgod-gateway", "-s",
              "127.0.0.1:" + std::to_string(free_loopback_port()), "-m",
              "127.0.0.1:" + std::to_string(free_loopback_port())});
  const auto started = Clock::now();
  if (!PgodHarness::wait_for([&]() { return all_ready(pgod, names); }, 300s))
    throw std::runtime_error("the workers did not all start: " + pgod.log());
  const double ready_s = ms_since(started) / 1000;
  std::this_thread::sleep_for(5s);  // settle: the first cycles' children reaped, the gateway's key scan done
  return ready_s;
}

// The processes measured on our side, besides pgod itself.
struct Processes {
  std::vector<pid_t> workers;
  pid_t gateway = 0;
};

// The workers pgod lists and the gateway (pgod's child running as the gateway user).
Processes processes_of(const PgodHarness& pgod) {
  Processes processes;
  for (const auto& row : pgod.workers()) processes.workers.push_back(row.pid);
  for (pid_t child : pgod::bench::children_of(pgod.pid()))
    if (proc_status(child)["Uid"].rfind(std::to_string(gateway_user().uid) + "\t", 0) == 0) processes.gateway = child;
  if (processes.gateway == 0) throw std::runtime_error("no gateway process under pgod: " + pgod.log());
  return processes;
}

// 2. Memory: PSS of each worker, pgod and the gateway, beside the idle sshd's.
void measure_memory(int count, double ready_s, pid_t pgod_pid, const Processes& processes, pid_t sshd_pid) {
  const std::string n = std::to_string(count);
  std::vector<double> pss;
  for (pid_t worker : processes.workers) pss.push_back(pss_kib(worker));
  const double supervisor = pss_kib(pgod_pid), gateway_pss = pss_kib(processes.gateway);
  const double sshd_pss = pss_kib(sshd_pid);
  double total = 0;
  for (double value : pss) total += value;
  std::printf("memory with %d idle services, one user each (PSS, smaps_rollup; all ready after %.1f s)\n", count,
              ready_s);
  std::printf("  per worker: median %.0f KiB, max %.0f KiB, all %d workers %.1f MiB\n", median(pss),
              *std::max_element(pss.begin(), pss.end()), count, total / 1024);
  std::printf("  pgod (the supervisor): %.0f KiB; pgod-gateway: %.0f KiB\n", supervisor, gateway_pss);
  std::printf("  reference: idle sshd listening on loopback: %.0f KiB  (worker/sshd %.2fx)\n", sshd_pss,
              median(pss) / sshd_pss);
  figure("pss_worker_kib_" + n, pss);
  figure("pss_workers_total_mib_" + n, total / 1024);
  figure("pss_pgod_kib_" + n, supervisor);
  figure("pss_gateway_kib_" + n, gateway_pss);
  figure("pss_sshd_kib", sshd_pss);
  figure("ready_s_" + n, ready_s);
}

// 3. Idle CPU over `idle_seconds`: pgod, the workers and the gateway, beside the idle sshd; throws
// when a worker restarted meanwhile.
void measure_idle_cpu(int count, int idle_seconds, const PgodHarness& pgod, const Processes& processes,
                      pid_t sshd_pid) {
  const auto& workers = processes.workers;
  const pid_t gateway = processes.gateway;
  const auto sum = [](const std::vector<pid_t>& pids) {
    std::uint64_t ticks = 0;
    for (pid_t pid : pids) ticks += pgod::bench::cpu_ticks(pid);
    return ticks;
  };
  const auto before = Clock::now();
  const auto pgod0 = pgod::bench::cpu_ticks(pgod.pid()), workers0 = sum(workers),
             gateway0 = pgod::bench::cpu_ticks(gateway), sshd0 = pgod::bench::cpu_ticks(sshd_pid);
  std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
  const auto pgod1 = pgod::bench::cpu_ticks(pgod.pid()), workers1 = sum(workers),
             gateway1 = pgod::bench::cpu_ticks(gateway), sshd1 = pgod::bench::cpu_ticks(sshd_pid);
  const double window_ms = ms_since(before);
  std::vector<pid_t> after;
  for (const auto& row : pgod.workers()) after.push_back(row.pid);
  if (after != workers) throw std::runtime_error("a worker restarted during the idle window: " + pgod.log());
  const auto percent = [&](std::uint64_t ticks) { return ticks_to_ms(ticks) / window_ms * 100; };
  const double all = percent((pgod1 - pgod0) + (workers1 - workers0) + (gateway1 - gateway0));
  std::printf("idle CPU with %d services over %.1f s (utime+stime, %% of one core)\n", count, window_ms / 1000);
  std::printf("  pgod + %d workers + gateway: %.3f %%  (pgod %.3f, workers %.3f, gateway %.3f)\n", count, all,
              percent(pgod1 - pgod0), percent(workers1 - workers0), percent(gateway1 - gateway0));
  std::printf("  reference: idle sshd: %.3f %%\n", percent(sshd1 - sshd0));
  figure("idle_window_s", window_ms / 1000);
  figure("idle_services", count);
  figure("idle_cpu_pct", all);
  figure("idle_cpu_pgod_pct", percent(pgod1 - pgod0));
  figure("idle_cpu_workers_pct", percent(workers1 - workers0));
  figure("idle_cpu_gateway_pct", percent(gateway1 - gateway0));
  figure("idle_cpu_sshd_pct", percent(sshd1 - sshd0));
}

// Steps 2 and 3 with `count` services (3 only when idle_seconds > 0).
void services(int count, int idle_seconds) {
  pgod::bench::BenchUsers users(count);
  PgodHarness pgod;
  const double ready_s = start_services(pgod, users, count);
  const Processes processes = processes_of(pgod);
  // Reference: an idle sshd on loopback (its own host key, no PAM).
  TempDir dir;
  pgod::bench::must({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", dir.path() + "/key"});
  pgod::bench::Sshd sshd(dir.path(), dir.path() + "/key.pub");
  std::this_thread::sleep_for(1s);
  measure_memory(count, ready_s, pgod.pid(), processes, sshd.pid());
  if (idle_seconds > 0) measure_idle_cpu(count, idle_seconds, pgod, processes, sshd.pid());
  pgod.stop();
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 20;
  const int idle_seconds = argc > 2 ? std::atoi(argv[2]) : 30;
  std::vector<int> counts;
  for (int i = 3; i < argc; ++i) counts.push_back(std::atoi(argv[i]));
  if (counts.empty()) counts = {50, 100};
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    fork_to_answer(runs);
    for (std::size_t i = 0; i < counts.size(); ++i) services(counts[i], i + 1 == counts.size() ? idle_seconds : 0);
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "supervisor_bench: %s\n", failure.what());
    return 1;
  }
  return 0;
}
