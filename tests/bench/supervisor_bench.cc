// Supervisor benchmark (not a test): figures for the docs, each beside a reference measured in
// the same run, because these machines are noisy. Run as root (it creates test users).
//
//   1. Start to answering: pgod is started with one service; the time until a `status` call on
//      the worker's socket is answered (pgod's exec and config check, the directories, the
//      socket, fork, confinement: groups, uids, no_new_privs, seccomp; the worker's exec and
//      start-up). Reference: pgod-worker started by hand (posix_spawn as root, no confinement,
//      the same inherited socket and settings fd), until its first `status` answer.
//   2. Memory: PSS (from /proc/PID/smaps_rollup) of each idle worker with 50 services, and of
//      pgod itself. Reference: an idle OpenSSH sshd listening on loopback.
//
//   build/tests/supervisor_bench [runs]     (default 20)
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "git_fixture.h"
#include "pgod_harness.h"
#include "worker.capnp.h"
#include "worker_harness.h"

using namespace pgod::test;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
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

double pss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "Pss:") {
      in >> value;
      return value;
    }
  }
  return 0;
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
}

void memory(int services) {
  PgodHarness pgod;
  std::string config;
  std::vector<std::string> names;
  for (int i = 0; i < services; ++i) {
    names.push_back("svc" + std::to_string(i));
    config += PgodHarness::service_toml(names.back(), (i % 2 ? service_user_a() : service_user_b()).name,
                                        pgod.upstream("web").path());
  }
  pgod.write_config(config);
  pgod.start();
  if (!pgod.wait_ready(names, 180s)) throw std::runtime_error("the workers did not all start: " + pgod.log());
  std::this_thread::sleep_for(2s);  // idle
  std::vector<double> pss;
  for (const auto& row : pgod.workers()) pss.push_back(pss_kib(row.pid));
  const double supervisor = pss_kib(pgod.pid());

  // Reference: an idle sshd on loopback (its own host key, no PAM).
  TempDir dir;
  const int port = free_loopback_port();
  run_process({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir.path() + "/host"});
  const auto config_file = dir.write("sshd_config", "Port " + std::to_string(port) +
                                                        "\nListenAddress 127.0.0.1\nHostKey " + dir.path() +
                                                        "/host\nUsePAM no\nStrictModes no\nPidFile " + dir.path() +
                                                        "/sshd.pid\n");
  // Debian's sshd insists on its privilege-separation directory; made (and removed) if missing.
  const bool made_run_sshd = std::filesystem::create_directories("/run/sshd");
  pid_t sshd = fork();
  if (sshd == 0) {
    execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-f", config_file.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::this_thread::sleep_for(1s);
  const double sshd_pss = pss_kib(sshd);
  kill(sshd, SIGTERM);
  waitpid(sshd, nullptr, 0);
  if (made_run_sshd) std::filesystem::remove("/run/sshd");

  double total = 0;
  for (double value : pss) total += value;
  std::printf("memory with %d idle services (PSS, smaps_rollup)\n", services);
  std::printf("  per worker: median %.0f KiB, all %d workers %.1f MiB\n", median(pss), services, total / 1024);
  std::printf("  pgod (the supervisor): %.0f KiB\n", supervisor);
  std::printf("  reference: idle sshd listening on loopback: %.0f KiB  (worker/sshd %.2fx)\n", sshd_pss,
              median(pss) / sshd_pss);
  pgod.stop();
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 20;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  fork_to_answer(runs);
  memory(50);
  return 0;
}
