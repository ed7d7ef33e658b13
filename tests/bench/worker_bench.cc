// Worker benchmark (not a test): figures for docs, each beside a reference measured in the
// same run on the same repository, because these machines are noisy.
//
//   1. A no-change poll: `git pull` through the worker's RPC when upstream has not moved
//      (fetch + compare + the self-heal `up -d`, with the recording stand-in docker), wall
//      time per call and the worker's CPU per call. Reference: the git CLI's `git fetch` +
//      `git rev-parse` on a clone of the same repository.
//   2. Push -> `up` started: a new compose commit, then `git pull` through the RPC, until the
//      stand-in records `up -d` starting. Reference: the same pair by hand (`git fetch`,
//      `git reset --hard`, then starting the stand-in `docker-compose up -d`).
//
//   build/tests/worker_bench [runs]     (default 30; run as root, like the tests)
#include <sys/times.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "bench_common.h"
#include "git_fixture.h"
#include "worker_harness.h"

using namespace pgod::test;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double p90(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, v.size() * 9 / 10)];
}
double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}
// utime + stime of a process (or, with children, of its reaped children), in milliseconds.
// Clock ticks are 10 ms: only totals over many runs mean anything.
double cpu_ms(pid_t pid, bool children = false) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string field;
  std::vector<std::string> fields;
  while (stat >> field) fields.push_back(field);
  if (fields.size() < 17) return 0;
  const int first = children ? 15 : 13;
  return (std::stod(fields[first]) + std::stod(fields[first + 1])) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}
std::int64_t realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
// The t= stamp of the last stand-in call containing `needle`.
std::int64_t stamp_of(const std::string& calls, const std::string& needle) {
  const auto at = calls.rfind(needle);
  if (at == std::string::npos) return 0;
  const auto t = calls.find("| t=", at);
  return std::stoll(calls.substr(t + 4, calls.find('\n', t) - t - 4));
}

void row(const char* what, const std::vector<double>& ours, const char* reference, const std::vector<double>& ref) {
  std::printf("| %-34s | %8.1f | %8.1f | %-36s | %8.1f | %5.2fx |\n", what, median(ours), p90(ours), reference,
              median(ref), median(ref) > 0 ? median(ours) / median(ref) : 0.0);
}

// The service's compose file: one container; step 2 adds an environment to make each new commit.
constexpr const char* kCompose =
    "services:\n  web:\n    image: busybox:pgod-bench\n    command: [\"sleep\", \"3600\"]\n";

// The worker on `upstream`, once its first cycle is over.
void start(WorkerHarness& worker) {
  worker.start();
  worker.wait_for([&] { return worker.state() != pgod::rpc::ServiceState::STARTING; });
}

// The reference's own clone of the upstream (the git CLI works on it); its path.
std::string reference_clone(const std::string& repos, const std::string& upstream) {
  const auto clone = repos + "/reference-clone";
  git({"clone", "-q", upstream, clone});
  return clone;
}

// 1. No-change poll: wall ms per call on both sides, and CPU ms: the worker's and its compose
// children's per call, the git CLI's over all runs.
struct Poll {
  std::vector<double> wall, reference_wall;
  double worker_cpu = 0, compose_cpu = 0;
  double reference_cpu = 0;  // the total over the runs
};

Poll measure_poll(int runs, WorkerHarness& worker, const std::string& clone) {
  Poll poll;
  const double cpu_before = cpu_ms(worker.pid()), children_before = cpu_ms(worker.pid(), true);
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    worker.run(pgod::rpc::Verb::GIT_PULL);
    poll.wall.push_back(ms_since(start));

    const auto ref_start = Clock::now();
    tms before{}, after{};
    times(&before);
    git({"-C", clone, "fetch", "-q", "origin"});
    git({"-C", clone, "rev-parse", "origin/main"});
    times(&after);
    poll.reference_wall.push_back(ms_since(ref_start));
    poll.reference_cpu +=
        static_cast<double>((after.tms_cutime + after.tms_cstime) - (before.tms_cutime + before.tms_cstime)) * 1000.0 /
        static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  poll.worker_cpu = (cpu_ms(worker.pid()) - cpu_before) / runs;
  poll.compose_cpu = (cpu_ms(worker.pid(), true) - children_before) / runs;
  return poll;
}

// 2. Push -> up started: ms from the RPC (or the first git command) to the stand-in's `up -d`
// record, the runs where it was recorded.
struct PushToUp {
  std::vector<double> ours, reference;
};

PushToUp measure_push_to_up(int runs, WorkerHarness& worker, GitUpstream& upstream, const std::string& clone) {
  PushToUp push;
  const auto standin = worker.standin_dir() + "/docker-compose";
  for (int i = 0; i < runs; ++i) {
    upstream.commit(
        {{"compose.yaml", std::string(kCompose) + "    environment:\n      N: \"" + std::to_string(i) + "\"\n"}});
    worker.clear_calls();
    const auto sent = realtime_ns();
    worker.run(pgod::rpc::Verb::GIT_PULL);
    const auto up = stamp_of(worker.calls(), " up -d |");
    if (up > 0) push.ours.push_back(static_cast<double>(up - sent) / 1e6);

    worker.clear_calls();
    const auto ref_sent = realtime_ns();
    git({"-C", clone, "fetch", "-q", "origin"});
    git({"-C", clone, "reset", "-q", "--hard", "origin/main"});
    run_process({standin, "-p", "bench", "-f", clone + "/compose.yaml", "up", "-d"});
    const auto ref_up = stamp_of(worker.calls(), " up -d |");
    if (ref_up > 0) push.reference.push_back(static_cast<double>(ref_up - ref_sent) / 1e6);
  }
  return push;
}

// For people: the markdown table.
void print_table(int runs, const Poll& poll, const PushToUp& push) {
  std::printf("worker benchmark, %d runs each (median and p90 in ms)\n\n", runs);
  std::printf("| %-34s | %8s | %8s | %-36s | %8s | %6s |\n", "measure", "median", "p90", "reference", "median",
              "ratio");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str(), std::string(38, '-').c_str(), std::string(10, '-').c_str(),
              std::string(8, '-').c_str());
  row("no-change poll, wall (RPC git pull)", poll.wall, "git fetch + rev-parse (git CLI)", poll.reference_wall);
  std::printf("| %-34s | %8.1f | %8s | %-36s | %8.1f | %5.2fx |\n", "no-change poll, worker CPU (mean)",
              poll.worker_cpu, "", "git CLI fetch + rev-parse CPU (mean)", poll.reference_cpu / runs,
              poll.reference_cpu > 0 ? poll.worker_cpu / (poll.reference_cpu / runs) : 0.0);
  std::printf("| %-34s | %8.1f | %8s | %-36s | %8s | %6s |\n", "  + stand-in compose CPU (mean)", poll.compose_cpu, "",
              "(config + up -d, shell stand-in)", "", "");
  row("push -> up -d started", push.ours, "git fetch + reset + spawn up -d", push.reference);
}

// The samples, for tests/bench/run.sh (which pools several runs).
void print_figures(int runs, const Poll& poll, const PushToUp& push) {
  pgod::bench::figure("poll_ms", poll.wall);
  pgod::bench::figure("poll_git_cli_ms", poll.reference_wall);
  pgod::bench::figure("poll_worker_cpu_ms", poll.worker_cpu);
  pgod::bench::figure("poll_compose_cpu_ms", poll.compose_cpu);
  pgod::bench::figure("poll_git_cli_cpu_ms", poll.reference_cpu / runs);
  pgod::bench::figure("push_up_ms", push.ours);
  pgod::bench::figure("push_up_git_cli_ms", push.reference);
}

// Whether the stand-in recorded `up -d` after every push, on both sides (the reason on stderr
// when not).
bool up_after_every_push(int runs, const PushToUp& push) {
  if (push.ours.size() != static_cast<std::size_t>(runs) || push.reference.size() != static_cast<std::size_t>(runs)) {
    std::fprintf(stderr, "worker_bench: up -d was not recorded after every push (%zu and %zu of %d)\n",
                 push.ours.size(), push.reference.size(), runs);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 30;
  TempDir repos;
  GitUpstream upstream(repos.path());
  upstream.commit({{"compose.yaml", kCompose}});
  WorkerHarness worker(upstream.path());
  start(worker);
  const std::string clone = reference_clone(repos.path(), upstream.path());
  const Poll poll = measure_poll(runs, worker, clone);
  const PushToUp push = measure_push_to_up(runs, worker, upstream, clone);
  print_table(runs, poll, push);
  print_figures(runs, poll, push);
  return up_after_every_push(runs, push) ? 0 : 1;
}
