// Compose benchmark (not a test): `svc//ps` on a real docker engine with a real running
// container, end to end, beside the same compose `ps` run directly and through OpenSSH's sshd.
// Run as root: it creates test users, runs pgod and sshd and uses dockerd (started only when
// none answers, see tests/support/docker_env.h; the image is a local busybox served by a
// loopback registry).
//
// One service whose compose file runs one container (`sleep 3600`), deployed by pgod with the
// compose program asked for (`plugin`: `docker compose`, Compose v2; `standalone`:
// docker-compose, v1 on Debian 12). Once it runs, these are interleaved `runs` times (each
// round starting one further along):
//   - reference: `COMPOSE -p PROJECT -f compose.yaml ps` as the service's user (its groups
//     plus docker, as pgod gives its worker), in the checkout, with the worker's environment
//     (PATH, HOME, DOCKER_CONFIG, DOCKER_HOST, PYTHONNOUSERSITE);
//   - the worker alone: a `run(ps)` call on the worker's socket (a new connection each time),
//     until the answer: the worker's own overhead (RPC, compose under its confinement);
//   - `ssh tester@… SVC//ps` and `pgoctl … SVC//ps` through the gateway: the whole path;
//   - reference for that: `ssh root@… 'cd CHECKOUT && setpriv … COMPOSE … ps'` to sshd, the
//     same command as the service's user behind an OpenSSH login (same key, same client);
//   - `ssh tester@… SVC//ping`: the SSH login and a gateway round trip, no worker.
// Every output is checked (the container's name, exit status 0). Figures are prefixed with
// the program ("plugin_ps_…", "standalone_ps_…").
//
//   build/tests/compose_bench [runs] [plugin|standalone]     (default 15 plugin)
//
// Exit status 1 on a measurement error; a missed goal is printed, not failed.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>

#include "bench_common.h"
#include "compose_programs.h"
#include "docker_env.h"
#include "pgod_harness.h"
#include "service_name.h"
#include "worker.capnp.h"
#include "worker_harness.h"

using namespace pgod::test;
using namespace pgod::bench;
using namespace std::chrono_literals;

namespace {

int errors = 0;
void error(const std::string& what) {
  ++errors;
  std::fprintf(stderr, "error: %s\n", what.c_str());
}

// The worker's PATH (worker/compose.cc), to find the same docker-compose it runs.
constexpr const char* kWorkerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string on_path(const std::string& program) {
  std::string path = kWorkerPath;
  for (std::size_t at = 0; at <= path.size();) {
    const auto end = std::min(path.find(':', at), path.size());
    const auto candidate = path.substr(at, end - at) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    at = end + 1;
  }
  throw std::runtime_error(program + " is not on the worker's PATH");
}

// One `ps` through the worker's Cap'n Proto socket, as the gateway calls it; wall ms from connect
// to the answer, and the output.
double worker_ps(const std::string& socket_path, std::string& out, std::uint32_t& status) {
  auto io = kj::setupAsyncIo();
  const auto start = Clock::now();
  auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", socket_path.c_str())).wait(io.waitScope);
  auto stream = address->connect().wait(io.waitScope);
  capnp::TwoPartyClient client(*stream);
  auto request = client.bootstrap().castAs<pgod::rpc::Worker>().runRequest();
  request.setVerb(pgod::rpc::Verb::PS);
  request.initArgs(0);
  std::string err;
  request.setOutput(kj::heap<CollectingSink>(out, err));
  request.setCaller("compose_bench");
  status = request.send().wait(io.waitScope).getExitStatus();
  return seconds_between(start, Clock::now()) * 1000;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 15;
  const std::string program = argc > 2 ? argv[2] : "plugin";
  if (program != "plugin" && program != "standalone") {
    std::fprintf(stderr, "compose_bench: the program is plugin or standalone, not %s\n", program.c_str());
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string name = "pgodbench" + std::to_string(getpid());
  const std::string project = pgod::compose_project_name(name);
  std::unique_ptr<DockerEnvironment> docker;
  std::string image;
  // Whatever happens, the project's containers, its network and the pulled image go again.
  const auto clean_up = [&]() {
    if (!docker) return;
    for (const auto& id : docker->containers(project)) docker->docker({"rm", "-f", id});
    docker->docker({"network", "rm", project + "_default"});
    if (!image.empty()) docker->docker({"rmi", image});
  };
  try {
    docker = std::make_unique<DockerEnvironment>();
    image = docker->image();
    TempDir dir;
    const std::string key = dir.path() + "/key";
    must({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key});

    PgodHarness pgod;
    pgod.use_real_docker();
    auto& upstream = pgod.upstream(name);
    upstream.commit(
        {{"compose.yaml", "services:\n  app:\n    image: " + image + "\n    command: [\"sleep\", \"3600\"]\n"},
         {"ssh/dev.pub", read_file(key + ".pub")}});
    pgod.write_config(PgodHarness::service_toml(
        name, service_user_a().name, upstream.path(),
        "registries = [ \"" + docker->user() + ":" + docker->token() + "@" + docker->registry() + "\" ]\n"));
    const int port = free_loopback_port();
    pgod.start({"--compose", program, "--gateway-program", programs_dir() + "/pgod-gateway", "-s",
                "127.0.0.1:" + std::to_string(port), "-m", "127.0.0.1:" + std::to_string(free_loopback_port())});
    const auto ping_ssh = ssh(port, key, "tester@127.0.0.1", name + "//ping");
    if (!PgodHarness::wait_for([&]() { return docker->containers(project).size() == 1; }, 180s) ||
        !pgod.wait_ready({name}, 60s) || !PgodHarness::wait_for([&]() { return run(ping_ssh).exit_code == 0; }))
      throw std::runtime_error("the service did not come up: " + pgod.log());

    const auto ps_ssh = ssh(port, key, "tester@127.0.0.1", name + "//ps");
    const std::vector<std::string> ps_pgoctl = {
        PGOCTL_BIN,      "-p",        std::to_string(port),        "-i", key, "--insecure-no-host-key-check",
        "--known-hosts", "/dev/null", "127.0.0.1:" + name + "//ps"};
    const std::vector<std::string> compose = program == "plugin"
                                                 ? std::vector<std::string>{on_path("docker"), "compose"}
                                                 : std::vector<std::string>{on_path("docker-compose")};
    std::vector<std::string> ps_direct = compose;
    ps_direct.insert(ps_direct.end(), {"-p", project, "-f", "compose.yaml", "ps"});
    const std::string checkout = pgod.dir() + "/" + name;
    const std::vector<std::string> environment = {std::string("PATH=") + kWorkerPath,
                                                  "HOME=/nonexistent",
                                                  "DOCKER_CONFIG=" + pgod.dir() + "/.pgod/" + name + "/docker",
                                                  "DOCKER_HOST=unix:///var/run/docker.sock",
                                                  "DOCKER_CONTEXT=default",
                                                  "DOCKER_TLS_VERIFY=",
                                                  "DOCKER_CERT_PATH=",
                                                  "PYTHONNOUSERSITE=1"};
    RunAs as_service{
        service_user_a().uid, service_user_a().gid, {service_user_a().gid, docker_group()}, checkout, environment};
    // The same command through sshd: a login as root, then the service's user (setpriv drops
    // to it without a second login), in the checkout, with the same environment.
    Sshd sshd(dir.path(), key + ".pub");
    std::string remote = "cd " + checkout + " && exec setpriv --reuid=" + std::to_string(service_user_a().uid) +
                         " --regid=" + std::to_string(service_user_a().gid) +
                         " --groups=" + std::to_string(service_user_a().gid) + "," + std::to_string(docker_group()) +
                         " env -i";
    for (const auto& entry : environment) remote += " " + entry;
    for (const auto& word : ps_direct) remote += " " + word;
    const auto ps_sshd = ssh(sshd.port(), key, "root@127.0.0.1", remote);
    const std::string socket = pgod.rundir() + "/workers/" + name + ".sock";
    const int major = compose_major(program);
    const std::string container = compose_container_name(major, project, "app");

    std::vector<double> direct, worker, via_ssh, via_pgoctl, via_sshd, login;
    const auto client = [&](const std::vector<std::string>& argv, const std::optional<RunAs>& as,
                            const std::string& expected, std::vector<double>& into) {
      return [&, as, expected]() {
        const auto r = run(argv, as);
        if (r.exit_code != 0 || r.head.find(expected) == std::string::npos)
          error(argv.back() + " (exit " + std::to_string(r.exit_code) + "): " + r.head.substr(0, 300) + r.err);
        else
          into.push_back(r.ms());
      };
    };
    const auto through_worker = [&]() {
      std::string out;
      std::uint32_t status = 1;
      const double ms = worker_ps(socket, out, status);
      if (status != 0 || out.find(container) == std::string::npos)
        error("worker run(ps): exit " + std::to_string(status) + ": " + out);
      else
        worker.push_back(ms);
    };
    // One of each first, unmeasured: the first compose run of a user warms caches.
    for (const auto& argv : {ps_ssh, ps_pgoctl, ps_sshd}) run(argv);
    run(ps_direct, as_service);
    interleave(
        runs, {client(ps_direct, as_service, container, direct), through_worker,
               client(ps_ssh, std::nullopt, container, via_ssh), client(ps_pgoctl, std::nullopt, container, via_pgoctl),
               client(ps_sshd, std::nullopt, container, via_sshd), client(ping_ssh, std::nullopt, "pong", login)});

    const double reference = median(direct);
    std::printf("svc//ps on a real engine with %s, %d runs interleaved (median ms)\n", program.c_str(), runs);
    std::printf("  reference: compose ps, directly as the service's user:       %8.1f\n", reference);
    std::printf("  worker run(ps) over its socket:                              %8.1f  (+%.1f)\n", median(worker),
                median(worker) - reference);
    std::printf("  ssh SVC//ps through the gateway:                             %8.1f  (+%.1f)\n", median(via_ssh),
                median(via_ssh) - reference);
    std::printf("  pgoctl SVC//ps through the gateway:                          %8.1f  (+%.1f)\n", median(via_pgoctl),
                median(via_pgoctl) - reference);
    std::printf("  reference: the same compose ps through sshd (a login):       %8.1f\n", median(via_sshd));
    std::printf("  ssh SVC//ping (login + gateway round trip):                  %8.1f\n", median(login));
    const double overhead = median(via_ssh) - median(via_sshd);
    std::printf("goal: the worker's own ps overhead <= 10 ms: %s (%+.1f ms)\n",
                median(worker) - reference <= 10 ? "met" : "MISSED", median(worker) - reference);
    std::printf("ssh SVC//ps against sshd running the same compose ps: %+.1f ms\n", overhead);

    const std::string prefix = program + "_";
    figure(prefix + "ps_direct_ms", direct);
    figure(prefix + "ps_worker_ms", worker);
    figure(prefix + "ps_ssh_ms", via_ssh);
    figure(prefix + "ps_pgoctl_ms", via_pgoctl);
    figure(prefix + "ps_sshd_ms", via_sshd);
    figure(prefix + "ps_ping_ssh_ms", login);
    auto version = compose;
    version.insert(version.end(), {"version", "--short"});
    figure_text(prefix + "compose_program", std::string(program == "plugin" ? "docker compose" : "docker-compose") +
                                                " " + (major == 1 ? "v1" : "v2") + " (" +
                                                first_line(run(version).head) + ")");

    pgod.stop();
    PgodHarness::wait_for([]() { return !runs_as(service_user_a().uid); }, 10s);
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "compose_bench: %s\n", failure.what());
    clean_up();
    return 1;
  }
  clean_up();
  if (errors > 0) std::printf("%d measurement errors (see stderr)\n", errors);
  return errors > 0 ? 1 : 0;
}
