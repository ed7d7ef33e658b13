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

// The command line: [runs] [plugin|standalone].
struct Options {
  int runs;
  std::string program;
};

// The options; nothing (the reason on stderr) when the program is neither plugin nor standalone.
std::optional<Options> parse_arguments(int argc, char** argv) {
  Options options{.runs = argc > 1 ? std::atoi(argv[1]) : 15, .program = argc > 2 ? argv[2] : "plugin"};
  if (options.program != "plugin" && options.program != "standalone") {
    std::fprintf(stderr, "compose_bench: the program is plugin or standalone, not %s\n", options.program.c_str());
    return std::nullopt;
  }
  return options;
}

// The docker engine (started only when none answers) and the image the service runs.
struct Engine {
  std::unique_ptr<DockerEnvironment> docker;
  std::string image;

  void start() {
    docker = std::make_unique<DockerEnvironment>();
    image = docker->image();
  }
  // Whatever happens, the project's containers, its network and the pulled image go again.
  void clean_up(const std::string& project) const {
    if (!docker) return;
    for (const auto& id : docker->containers(project)) docker->docker({"rm", "-f", id});
    docker->docker({"network", "rm", project + "_default"});
    if (!image.empty()) docker->docker({"rmi", image});
  }
};

// The client key (ed25519, no passphrase) in `dir`; its path.
std::string make_key(const std::string& dir) {
  const std::string key = dir + "/key";
  must({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key});
  return key;
}

// The service `name` (one container, `sleep 3600`) deployed by pgod with the compose program
// asked for, on the real engine, with the gateway on a loopback port; once its container runs and
// SVC//ping answers, that port.
int deploy(PgodHarness& pgod, const Options& options, const std::string& name, const std::string& project,
           const Engine& engine, const std::string& key) {
  pgod.use_real_docker();
  auto& upstream = pgod.upstream(name);
  upstream.commit(
      {{"compose.yaml", "services:\n  app:\n    image: " + engine.image + "\n    command: [\"sleep\", \"3600\"]\n"},
       {"ssh/dev.pub", read_file(key + ".pub")}});
  const auto& docker = *engine.docker;
  pgod.write_config(PgodHarness::service_toml(
      name, service_user_a().name, upstream.path(),
      "registries = [ \"" + docker.user() + ":" + docker.token() + "@" + docker.registry() + "\" ]\n"));
  const int port = free_loopback_port();
  pgod.start({"--compose", options.program, "--gateway-program", programs_dir() + "/pgod-gateway", "-s",
              "127.0.0.1:" + std::to_string(port), "-m", "127.0.0.1:" + std::to_string(free_loopback_port())});
  const auto ping_ssh = ssh(port, key, "tester@127.0.0.1", name + "//ping");
  if (!PgodHarness::wait_for([&]() { return docker.containers(project).size() == 1; }, 180s) ||
      !pgod.wait_ready({name}, 60s) || !PgodHarness::wait_for([&]() { return run(ping_ssh).exit_code == 0; }))
    throw std::runtime_error("the service did not come up: " + pgod.log());
  return port;
}

// What the bench runs on each side, and what every `ps` output must name.
struct Commands {
  std::vector<std::string> ping_ssh, ps_ssh, ps_pgoctl;
  std::vector<std::string> compose;    // `docker compose` or docker-compose, as the worker finds it
  std::vector<std::string> ps_direct;  // run as_service: the service's user, groups, checkout, environment
  RunAs as_service;
  std::vector<std::string> ps_sshd;  // set once sshd runs: through_sshd
};

Commands commands_for(const PgodHarness& pgod, const Options& options, int port, const std::string& key,
                      const std::string& name, const std::string& project) {
  Commands commands;
  commands.ping_ssh = ssh(port, key, "tester@127.0.0.1", name + "//ping");
  commands.ps_ssh = ssh(port, key, "tester@127.0.0.1", name + "//ps");
  commands.ps_pgoctl = {
      PGOCTL_BIN,      "-p",        std::to_string(port),        "-i", key, "--insecure-no-host-key-check",
      "--known-hosts", "/dev/null", "127.0.0.1:" + name + "//ps"};
  commands.compose = options.program == "plugin" ? std::vector<std::string>{on_path("docker"), "compose"}
                                                 : std::vector<std::string>{on_path("docker-compose")};
  commands.ps_direct = commands.compose;
  commands.ps_direct.insert(commands.ps_direct.end(), {"-p", project, "-f", "compose.yaml", "ps"});
  const std::string checkout = pgod.dir() + "/" + name;
  const std::vector<std::string> environment = {std::string("PATH=") + kWorkerPath,
                                                "HOME=/nonexistent",
                                                "DOCKER_CONFIG=" + pgod.dir() + "/.pgod/" + name + "/docker",
                                                "DOCKER_HOST=unix:///var/run/docker.sock",
                                                "DOCKER_CONTEXT=default",
                                                "DOCKER_TLS_VERIFY=",
                                                "DOCKER_CERT_PATH=",
                                                "PYTHONNOUSERSITE=1"};
  commands.as_service = {
      service_user_a().uid, service_user_a().gid, {service_user_a().gid, docker_group()}, checkout, environment};
  return commands;
}

// The same command through sshd: a login as root, then the service's user (setpriv drops to it
// without a second login), in the checkout, with the same environment.
std::vector<std::string> through_sshd(int sshd_port, const std::string& key, const Commands& commands) {
  std::string remote =
      "cd " + commands.as_service.dir + " && exec setpriv --reuid=" + std::to_string(service_user_a().uid) +
      " --regid=" + std::to_string(service_user_a().gid) + " --groups=" + std::to_string(service_user_a().gid) + "," +
      std::to_string(docker_group()) + " env -i";
  for (const auto& entry : commands.as_service.env) remote += " " + entry;
  for (const auto& word : commands.ps_direct) remote += " " + word;
  return ssh(sshd_port, key, "root@127.0.0.1", remote);
}

// The worker's socket, the compose program's major version, and the container every `ps` output
// must name.
struct Target {
  std::string socket;
  int major;
  std::string container;
};

Target target_of(const PgodHarness& pgod, const Options& options, const std::string& name, const std::string& project) {
  Target target;
  target.socket = pgod.rundir() + "/workers/" + name + ".sock";
  target.major = compose_major(options.program);
  target.container = compose_container_name(target.major, project, "app");
  return target;
}

// Wall ms of each side, the checked runs only.
struct Samples {
  std::vector<double> direct, worker, via_ssh, via_pgoctl, via_sshd, login;
};

Samples measure(int runs, const Commands& commands, const Target& target) {
  Samples samples;
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
    const double ms = worker_ps(target.socket, out, status);
    if (status != 0 || out.find(target.container) == std::string::npos)
      error("worker run(ps): exit " + std::to_string(status) + ": " + out);
    else
      samples.worker.push_back(ms);
  };
  const auto& container = target.container;
  // One of each first, unmeasured: the first compose run of a user warms caches.
  for (const auto& argv : {commands.ps_ssh, commands.ps_pgoctl, commands.ps_sshd}) run(argv);
  run(commands.ps_direct, commands.as_service);
  interleave(runs, {client(commands.ps_direct, commands.as_service, container, samples.direct), through_worker,
                    client(commands.ps_ssh, std::nullopt, container, samples.via_ssh),
                    client(commands.ps_pgoctl, std::nullopt, container, samples.via_pgoctl),
                    client(commands.ps_sshd, std::nullopt, container, samples.via_sshd),
                    client(commands.ping_ssh, std::nullopt, "pong", samples.login)});
  return samples;
}

// For people: the medians, each beside its reference, and the goal.
void print_summary(const Options& options, const Samples& samples) {
  const double reference = median(samples.direct);
  std::printf("svc//ps on a real engine with %s, %d runs interleaved (median ms)\n", options.program.c_str(),
              options.runs);
  std::printf("  reference: compose ps, directly as the service's user:       %8.1f\n", reference);
  std::printf("  worker run(ps) over its socket:                              %8.1f  (+%.1f)\n", median(samples.worker),
              median(samples.worker) - reference);
  std::printf("  ssh SVC//ps through the gateway:                             %8.1f  (+%.1f)\n",
              median(samples.via_ssh), median(samples.via_ssh) - reference);
  std::printf("  pgoctl SVC//ps through the gateway:                          %8.1f  (+%.1f)\n",
              median(samples.via_pgoctl), median(samples.via_pgoctl) - reference);
  std::printf("  reference: the same compose ps through sshd (a login):       %8.1f\n", median(samples.via_sshd));
  std::printf("  ssh SVC//ping (login + gateway round trip):                  %8.1f\n", median(samples.login));
  const double overhead = median(samples.via_ssh) - median(samples.via_sshd);
  std::printf("goal: the worker's own ps overhead <= 10 ms: %s (%+.1f ms)\n",
              median(samples.worker) - reference <= 10 ? "met" : "MISSED", median(samples.worker) - reference);
  std::printf("ssh SVC//ps against sshd running the same compose ps: %+.1f ms\n", overhead);
}

// The samples, for tests/bench/run.sh (which pools several runs), prefixed with the program, and
// which compose program and version it was.
void print_figures(const Options& options, const Samples& samples, const Commands& commands, const Target& target) {
  const std::string prefix = options.program + "_";
  figure(prefix + "ps_direct_ms", samples.direct);
  figure(prefix + "ps_worker_ms", samples.worker);
  figure(prefix + "ps_ssh_ms", samples.via_ssh);
  figure(prefix + "ps_pgoctl_ms", samples.via_pgoctl);
  figure(prefix + "ps_sshd_ms", samples.via_sshd);
  figure(prefix + "ps_ping_ssh_ms", samples.login);
  auto version = commands.compose;
  version.insert(version.end(), {"version", "--short"});
  figure_text(prefix + "compose_program",
              std::string(options.program == "plugin" ? "docker compose" : "docker-compose") + " " +
                  (target.major == 1 ? "v1" : "v2") + " (" + first_line(run(version).head) + ")");
}

// pgod stops, and its processes are waited for: the test users are removed at exit, and userdel
// refuses while any of their processes lingers.
void stop(PgodHarness& pgod) {
  pgod.stop();
  PgodHarness::wait_for([]() { return !runs_as(service_user_a().uid); }, 10s);
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = parse_arguments(argc, argv);
  if (!options) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string name = "pgodbench" + std::to_string(getpid());
  const std::string project = pgod::compose_project_name(name);
  Engine engine;
  try {
    engine.start();
    TempDir dir;
    const std::string key = make_key(dir.path());
    PgodHarness pgod;
    const int port = deploy(pgod, *options, name, project, engine, key);
    Commands commands = commands_for(pgod, *options, port, key, name, project);
    Sshd sshd(dir.path(), key + ".pub");
    commands.ps_sshd = through_sshd(sshd.port(), key, commands);
    const Target target = target_of(pgod, *options, name, project);
    const Samples samples = measure(options->runs, commands, target);
    print_summary(*options, samples);
    print_figures(*options, samples, commands, target);
    stop(pgod);
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "compose_bench: %s\n", failure.what());
    engine.clean_up(project);
    return 1;
  }
  engine.clean_up(project);
  if (errors > 0) std::printf("%d measurement errors (see stderr)\n", errors);
  return errors > 0 ? 1 : 0;
}
