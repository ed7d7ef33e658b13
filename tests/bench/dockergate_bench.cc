// Docker gate benchmark (not a test): what pgod-dockergate, between a service's docker socket and
// dockerd, costs the docker clients that go through it. Run as root: it creates a test user for
// the gate and uses dockerd (started only when none answers, see tests/support/docker_env.h; the
// image is the local busybox served by a loopback registry, nothing is pulled from outside).
//
// A real gate process, as pgod starts it (its settings on fd 3, one listening socket per service
// from fd 4), runs as its own test user with the docker group only, in its own confinement. Each
// measure runs the same client with DOCKER_HOST set to the service's gate socket, and to
// dockerd's socket directly; the two sides are interleaved (each round starting one further
// along), every output is checked:
//   - `docker compose ps` (Compose v2) on a one-service project that is up (one busybox
//     container, `sleep 3600`): wall ms of the whole client;
//   - `docker compose up -d` with nothing to change, the self-heal the worker runs each cycle
//     (the container must stay the same one);
//   - `docker logs ID` of a container (the project's label) that has written MIB MiB of
//     1024-byte lines: MB/s over the whole client run and from the first byte to EOF, the byte
//     count exact, and the gate process's CPU time during each run through it;
//   - the gate's PSS (/proc/PID/smaps_rollup) idle with 1 service and with SERVICES services,
//     each gate started alone, every socket answering one /_ping, then 1 s idle.
//
//   build/tests/dockergate_bench [runs] [MiB] [stream-runs] [pss-starts] [services]
//                                                                  (default 15 64 5 3 100)
//
// Exit status 1 on a measurement error; a missed goal is printed, not failed.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bench_common.h"
#include "compose_programs.h"
#include "docker_env.h"
#include "dockergate_process.h"
#include "service_name.h"

using namespace pgod::test;
using namespace pgod::bench;
using namespace std::chrono_literals;

namespace {

int errors = 0;
void error(const std::string& what) {
  ++errors;
  std::fprintf(stderr, "error: %s\n", what.c_str());
}

constexpr char kProjectLabel[] = "com.docker.compose.project";
constexpr char kDockerSocket[] = "/var/run/docker.sock";

struct Options {
  int runs = 15;        // interleaved rounds of ps and up -d
  int mib = 64;         // what the logs container writes
  int stream_runs = 5;  // interleaved rounds of docker logs
  int pss_starts = 3;   // gates started per service count, one PSS sample each
  int services = 100;   // the larger gate's service count
};

std::optional<Options> parse_arguments(int argc, char** argv) {
  Options options;
  int* fields[] = {&options.runs, &options.mib, &options.stream_runs, &options.pss_starts, &options.services};
  if (argc > 6) return std::nullopt;
  for (int i = 1; i < argc; ++i) {
    *fields[i - 1] = std::atoi(argv[i]);
    if (*fields[i - 1] <= 0) return std::nullopt;
  }
  return options;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// ---------------------------------------------------------------------------------------------
// The gate, as pgod starts it (Supervisor::spawn_dockergate; DockerGateProcess): settings on a
// memfd at fd 3, the services' listening sockets from fd 4, its own user with the docker group
// only. Each service's socket is <dir>/<name>.sock; stopped by its PID when the object goes.

struct GateService {
  std::string name;  // the project name is compose_project_name(name)
  std::string root;  // its one bind root
};

std::unique_ptr<DockerGateProcess> start_gate(const std::string& program, const TestUser& user,
                                              const std::vector<GateService>& services, const std::string& dir,
                                              const std::string& log_path) {
  std::vector<DockerGateService> served;
  for (const auto& service : services) {
    std::filesystem::create_directories(service.root);
    served.push_back({service.name, pgod::compose_project_name(service.name), {service.root}, {}});
  }
  DockerGateOptions options;
  options.program = program;
  options.socket_dir = dir;
  options.log = log_path;
  options.user = DockerGateUser{user.uid, user.gid};
  auto gate = std::make_unique<DockerGateProcess>(options, served);
  gate->wait_ready(6s);
  return gate;
}

bool ping(const std::string& socket_path) { return docker_ping(socket_path); }

// ---------------------------------------------------------------------------------------------
// The engine, the image, and what is left on it at the end.

struct Engine {
  std::unique_ptr<DockerEnvironment> docker;
  std::string image;
  bool pulled = false;

  void start() {
    docker = std::make_unique<DockerEnvironment>();
    image = docker->image();
    if (docker->docker({"image", "inspect", image}).exit_code != 0) {
      // The local busybox from the loopback registry (never the internet).
      const auto login = docker->docker({"login", "-u", docker->user(), "-p", docker->token(), docker->registry()});
      if (login.exit_code != 0) throw std::runtime_error("docker login: " + login.err);
      const auto pull = docker->docker({"pull", image});
      docker->docker({"logout", docker->registry()});
      if (pull.exit_code != 0) throw std::runtime_error("docker pull: " + pull.err);
      pulled = true;
    }
  }
  std::string must(const std::vector<std::string>& args) const {
    auto result = docker->docker(args);
    if (result.exit_code != 0) throw std::runtime_error("docker " + args.front() + ": " + result.err + result.out);
    return trimmed(result.out);
  }
  // Whatever happens, the project's containers, its network and the pulled image go again.
  void clean_up(const std::string& project) const {
    if (!docker) return;
    for (const auto& id : docker->containers(project, true)) docker->docker({"rm", "-f", "-v", id});
    for (const auto& id : lines_of(
             docker->docker({"network", "ls", "-q", "--filter", std::string("label=") + kProjectLabel + "=" + project})
                 .out))
      docker->docker({"network", "rm", id});
    if (pulled) docker->docker({"rmi", image});
  }
};

// ---------------------------------------------------------------------------------------------
// The clients: the same argv and environment on both sides but DOCKER_HOST.

struct Side {
  std::string name;
  RunAs as;
};

Side side(const std::string& name, const std::string& host, const std::string& dir) {
  Side s;
  s.name = name;
  s.as.uid = 0;
  s.as.gid = 0;
  s.as.groups = {0};
  s.as.dir = dir;
  s.as.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/nonexistent", "DOCKER_CONFIG=" + dir + "/config",
              "DOCKER_HOST=unix://" + host, "DOCKER_CONTEXT=default"};
  return s;
}

struct Samples {
  std::vector<double> ps_direct, ps_gate, up_direct, up_gate;
  std::vector<double> logs_direct, logs_gate, logs_stream_direct, logs_stream_gate;
  std::vector<double> logs_gate_cpu_ms;  // the gate process's CPU time while it relayed one run
  std::vector<double> pss_one, pss_many;
};

// ps and up -d, interleaved: each must succeed, ps must name the container.
void measure_compose(const Options& options, const std::vector<std::string>& compose, const Side& direct,
                     const Side& gate, const std::string& container, Samples& samples) {
  auto ps = compose, up = compose;
  ps.push_back("ps");
  up.insert(up.end(), {"up", "-d"});
  const auto client = [&](const std::vector<std::string>& argv, const Side& on, const std::string& expected,
                          std::vector<double>& into) {
    return [&, expected]() {
      const auto r = run(argv, on.as);
      if (r.exit_code != 0 || r.head.find(expected) == std::string::npos)
        error(on.name + " " + argv.back() + " (exit " + std::to_string(r.exit_code) + "): " + r.head.substr(0, 300) +
              r.err.substr(0, 2000));
      else
        into.push_back(r.ms());
    };
  };
  // One of each first, unmeasured: the first runs warm caches.
  for (const auto* on : {&direct, &gate}) {
    run(ps, on->as);
    run(up, on->as);
  }
  interleave(options.runs,
             {client(ps, direct, container, samples.ps_direct), client(ps, gate, container, samples.ps_gate),
              client(up, direct, "", samples.up_direct), client(up, gate, "", samples.up_gate)});
}

// docker logs of a finished container that wrote exactly `bytes`, interleaved.
void measure_logs(const Options& options, const std::string& id, std::uint64_t bytes, const Side& direct,
                  const Side& gate, pid_t gate_pid, Samples& samples) {
  const std::vector<std::string> logs = {"/usr/bin/docker", "logs", id};
  static const double ms_per_tick = 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  const auto client = [&](const Side& on, std::vector<double>& whole, std::vector<double>& stream,
                          std::vector<double>* relay_cpu) {
    return [&, relay_cpu]() {
      const std::uint64_t ticks_before = relay_cpu != nullptr ? cpu_ticks(gate_pid) : 0;
      const auto r = run(logs, on.as);
      // /proc/PID/stat sums every thread of the gate, the connection's among them, live or ended.
      if (relay_cpu != nullptr)
        relay_cpu->push_back(static_cast<double>(cpu_ticks(gate_pid) - ticks_before) * ms_per_tick);
      if (r.exit_code != 0 || r.bytes != bytes) {
        error(on.name + " docker logs (exit " + std::to_string(r.exit_code) + "): " + std::to_string(r.bytes) +
              " bytes of " + std::to_string(bytes) + ": " + r.err.substr(0, 2000));
        return;
      }
      whole.push_back(static_cast<double>(r.bytes) / seconds_between(r.start, r.end) / 1e6);
      stream.push_back(static_cast<double>(r.bytes) / seconds_between(r.first_byte, r.end) / 1e6);
    };
  };
  for (const auto* on : {&direct, &gate}) run(logs, on->as);  // warm-up, unmeasured
  interleave(options.stream_runs,
             {client(direct, samples.logs_direct, samples.logs_stream_direct, nullptr),
              client(gate, samples.logs_gate, samples.logs_stream_gate, &samples.logs_gate_cpu_ms)});
}

// A container of the project that writes `bytes` of 1024-byte lines to stdout and exits; its ID
// once it has.
std::string logs_container(const Engine& engine, const std::string& project, std::uint64_t bytes) {
  const std::string line(1023, 'x');
  const std::string id =
      engine.must({"run", "-d", "--label", std::string(kProjectLabel) + "=" + project, "--name", project + "-logs-1",
                   engine.image, "sh", "-c", "busybox yes " + line + " | busybox head -c " + std::to_string(bytes)});
  const std::string status = engine.must({"wait", id});
  if (status != "0") throw std::runtime_error("the logs container exited with " + status);
  return id;
}

// PSS of gates started alone with `count` services, each socket answering one /_ping first.
std::vector<double> measure_pss(const Options& options, int count, const std::string& program, const TestUser& user,
                                const std::string& dir) {
  std::vector<GateService> services;
  const std::string base = "pgdgp" + std::to_string(getpid() % 1000000) + "n";
  for (int i = 0; i < count; ++i) {
    const std::string name = base + std::to_string(i);
    services.push_back({name, dir + "/pss/" + name});
  }
  std::filesystem::create_directories(dir + "/pss");
  std::vector<double> samples;
  for (int start = 0; start < options.pss_starts; ++start) {
    const auto gate = start_gate(program, user, services, dir + "/pss", dir + "/gate-pss.log");
    for (const auto& service : services)
      if (!ping(gate->socket(service.name))) error("no /_ping answer on " + gate->socket(service.name));
    std::this_thread::sleep_for(1s);
    samples.push_back(pss_kib(gate->pid()));
  }
  return samples;
}

void print_summary(const Options& options, const Samples& s) {
  const auto line = [](const char* what, double direct, double gate, const char* unit) {
    std::printf("  %-44s direct %9.1f %-5s gate %9.1f %-5s gate/direct %.3f\n", what, direct, unit, gate, unit,
                gate / direct);
  };
  std::printf("the docker gate against dockerd's socket directly (medians; %d rounds, %d log rounds of %d MiB)\n",
              options.runs, options.stream_runs, options.mib);
  line("docker compose ps", median(s.ps_direct), median(s.ps_gate), "ms");
  line("docker compose up -d (no change)", median(s.up_direct), median(s.up_gate), "ms");
  line("docker logs, whole client run", median(s.logs_direct), median(s.logs_gate), "MB/s");
  line("docker logs, first byte to EOF", median(s.logs_stream_direct), median(s.logs_stream_gate), "MB/s");
  std::printf("  the gate's CPU time per docker logs run: %.0f ms\n", median(s.logs_gate_cpu_ms));
  std::printf("  gate PSS idle: 1 service %.2f MiB, %d services %.2f MiB\n", median(s.pss_one) / 1024, options.services,
              median(s.pss_many) / 1024);
  const double ps = median(s.ps_gate) / median(s.ps_direct), up = median(s.up_gate) / median(s.up_direct);
  const double logs = median(s.logs_gate) / median(s.logs_direct);
  std::printf("goals: ps <= +5 %%: %s (%+.1f %%); up -d <= +5 %%: %s (%+.1f %%); logs >= 0.9x: %s (%.2fx)\n",
              ps <= 1.05 ? "met" : "MISSED", (ps - 1) * 100, up <= 1.05 ? "met" : "MISSED", (up - 1) * 100,
              logs >= 0.9 ? "met" : "MISSED", logs);
  std::printf("load average now: %s\n", trimmed(read_file("/proc/loadavg")).c_str());
}

void print_figures(const Options& options, const Samples& s, const std::string& compose_version) {
  figure("gate_ps_direct_ms", s.ps_direct);
  figure("gate_ps_gate_ms", s.ps_gate);
  figure("gate_up_direct_ms", s.up_direct);
  figure("gate_up_gate_ms", s.up_gate);
  figure("gate_logs_mib", static_cast<double>(options.mib));
  figure("gate_logs_direct_mbs", s.logs_direct);
  figure("gate_logs_gate_mbs", s.logs_gate);
  figure("gate_logs_stream_direct_mbs", s.logs_stream_direct);
  figure("gate_logs_stream_gate_mbs", s.logs_stream_gate);
  figure("gate_logs_gate_cpu_ms", s.logs_gate_cpu_ms);
  figure("gate_pss_kib_1", s.pss_one);
  figure("gate_pss_kib_" + std::to_string(options.services), s.pss_many);
  figure_text("gate_compose_program", "docker compose " + compose_version);
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = parse_arguments(argc, argv);
  if (!options) {
    std::fprintf(stderr, "usage: dockergate_bench [runs] [MiB] [stream-runs] [pss-starts] [services]\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const ComposeProgram* v2 = nullptr;
  for (const auto& program : installed_compose_programs())
    if (program.name == "v2") v2 = &program;
  if (v2 == nullptr) {
    std::fprintf(stderr, "dockergate_bench: no Compose v2 on this host\n");
    return 1;
  }
  const std::string name = "pgdgb" + std::to_string(getpid());
  const std::string project = pgod::compose_project_name(name);
  Engine engine;
  try {
    engine.start();
    BenchUsers users(1, "pgdg");
    const TestUser& user = users.users().front();
    TempDir dir;
    std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));  // the gate resolves its roots
    // The gate from a 0755 directory, so its user may run it wherever the build tree lives.
    const std::string program = dir.path() + "/pgod-dockergate";
    std::filesystem::copy_file(PGOD_DOCKERGATE_BIN, program);
    std::filesystem::permissions(program, std::filesystem::perms(0755));
    std::filesystem::create_directories(dir.path() + "/config");

    Samples samples;
    // PSS first, each gate alone (no other gate shares its pages meanwhile).
    samples.pss_one = measure_pss(*options, 1, program, user, dir.path());
    samples.pss_many = measure_pss(*options, options->services, program, user, dir.path());

    const GateService service{name, dir.path() + "/root"};
    const auto gate = start_gate(program, user, {service}, dir.path(), dir.path() + "/gate.log");
    const Side direct = side("direct", kDockerSocket, dir.path()),
               through = side("gate", gate->socket(name), dir.path());
    std::ofstream(dir.path() + "/compose.yaml")
        << "services:\n  app:\n    image: " << engine.image << "\n    command: [\"sleep\", \"3600\"]\n";
    auto compose = v2->argv;
    compose.insert(compose.end(), {"-p", project, "-f", dir.path() + "/compose.yaml"});
    auto up = compose;
    up.insert(up.end(), {"up", "-d"});
    if (const auto r = run(up, through.as); r.exit_code != 0)
      throw std::runtime_error("compose up -d through the gate: " + r.err + "\n" + read_file(dir.path() + "/gate.log"));
    const std::string container = compose_container_name(v2->major, project, "app");
    const std::string before = engine.must({"inspect", "-f", "{{.Id}} {{.State.Running}}", container});
    if (before.find(" true") == std::string::npos) throw std::runtime_error("the container does not run: " + before);
    measure_compose(*options, compose, direct, through, container, samples);
    if (engine.must({"inspect", "-f", "{{.Id}} {{.State.Running}}", container}) != before)
      error("up -d with no change replaced or stopped the container (was " + before + ")");

    const std::uint64_t bytes = static_cast<std::uint64_t>(options->mib) << 20;
    const std::string id = logs_container(engine, project, bytes);
    measure_logs(*options, id, bytes, direct, through, gate->pid(), samples);
    if (waitpid(gate->pid(), nullptr, WNOHANG) != 0) error("the gate exited during the measurements");
    gate->stop();

    print_summary(*options, samples);
    print_figures(*options, samples,
                  trimmed(first_line(run({"/usr/bin/docker", "compose", "version", "--short"}).head)));
    engine.clean_up(project);
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "dockergate_bench: %s\n", failure.what());
    engine.clean_up(project);
    return 1;
  }
  if (errors > 0) std::printf("%d measurement errors (see stderr)\n", errors);
  return errors > 0 ? 1 : 0;
}
