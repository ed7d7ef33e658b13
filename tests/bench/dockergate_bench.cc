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
//     count exact;
//   - the gate's PSS (/proc/PID/smaps_rollup) idle with 1 service and with SERVICES services,
//     each gate started alone, every socket answering one /_ping, then 1 s idle.
//
//   build/tests/dockergate_bench [runs] [MiB] [stream-runs] [pss-starts] [services]
//                                                                  (default 15 64 5 3 100)
//
// Exit status 1 on a measurement error; a missed goal is printed, not failed.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
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
#include "dockergate.capnp.h"
#include "service_name.h"
#include "unique_fd.h"

using namespace pgod::test;
using namespace pgod::bench;
using namespace std::chrono_literals;
using pgod::UniqueFd;

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
// The gate, as pgod starts it (Supervisor::spawn_dockergate): settings on a memfd at fd 3, the
// services' listening sockets from fd 4, its own user with the docker group only.

struct GateService {
  std::string name;    // the project name too
  std::string root;    // its one bind root
  std::string socket;  // where its clients connect
};

UniqueFd listening_socket(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) throw std::runtime_error("socket path too long: " + path);
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (!fd || bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      listen(fd.get(), 64) != 0)
    throw std::runtime_error("cannot listen on " + path + ": " + strerror(errno));
  return fd;
}

UniqueFd settings_memfd(const std::vector<GateService>& services) {
  capnp::MallocMessageBuilder message;
  auto settings = message.initRoot<pgod::rpc::DockerGateSettings>();
  settings.setDockerSocket(kDockerSocket);
  auto list = settings.initServices(static_cast<unsigned>(services.size()));
  for (unsigned i = 0; i < services.size(); ++i) {
    list[i].setName(services[i].name);
    list[i].setProject(pgod::compose_project_name(services[i].name));
    list[i].initBindRoots(1).set(0, services[i].root);
    list[i].initNetworks(0);
    list[i].setSocketFd(static_cast<int>(4 + i));
  }
  UniqueFd memfd(memfd_create("dockergate-bench-settings", MFD_CLOEXEC));
  if (!memfd) throw std::runtime_error(std::string("memfd_create: ") + strerror(errno));
  capnp::writeMessageToFd(memfd.get(), message);
  if (lseek(memfd.get(), 0, SEEK_SET) != 0) throw std::runtime_error("lseek");
  return memfd;
}

// One /_ping on a gate socket, the bytes as a docker client writes them; whether it said OK.
bool ping(const std::string& socket_path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof address.sun_path - 1);
  if (!fd || connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) return false;
  timeval timeout{10, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const std::string request = "GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockergate-bench\r\n\r\n";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return false;
  std::string reply;
  char buffer[4096];
  while (reply.find("\r\n\r\nOK") == std::string::npos) {
    const ssize_t got = recv(fd.get(), buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    reply.append(buffer, static_cast<std::size_t>(got));
  }
  return reply.rfind("HTTP/1.1 200", 0) == 0 && reply.find("\r\n\r\nOK") != std::string::npos;
}

// A running pgod-dockergate: stopped (SIGTERM, then SIGKILL, by its PID) when the object goes.
class Gate {
 public:
  Gate(const std::string& program, const TestUser& user, const std::vector<GateService>& services,
       const std::string& log_path)
      : services_(services) {
    std::vector<UniqueFd> sockets;
    for (const auto& service : services) {
      std::filesystem::create_directories(service.root);
      std::filesystem::remove(service.socket);
      sockets.push_back(listening_socket(service.socket));
    }
    UniqueFd settings = settings_memfd(services);
    UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!log || !null) throw std::runtime_error("cannot open the gate's log or /dev/null");
    std::vector<int> sources = {settings.get()};
    for (const auto& fd : sockets) sources.push_back(fd.get());
    const gid_t docker_gid = docker_group();
    std::string path = program;
    std::string arg_fd = "--settings-fd", arg_three = "3";
    char* argv[] = {path.data(), arg_fd.data(), arg_three.data(), nullptr};
    std::string env_path = "PATH=/usr/bin:/bin", env_home = "HOME=/nonexistent";
    char* envp[] = {env_path.data(), env_home.data(), nullptr};
    const int above = 3 + static_cast<int>(sources.size());  // above every target number
    std::vector<int> high(sources.size(), -1);

    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
    if (pid_ == 0) {
      // Every source to a number above the targets first, so that no move overwrites another.
      for (std::size_t i = 0; i < sources.size(); ++i) {
        high[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, above);
        if (high[i] < 0) _exit(120);
      }
      if (dup2(null.get(), 0) != 0 || dup2(log.get(), 1) != 1 || dup2(log.get(), 2) != 2) _exit(122);
      for (std::size_t i = 0; i < sources.size(); ++i)
        if (dup2(high[i], 3 + static_cast<int>(i)) != 3 + static_cast<int>(i)) _exit(121);  // inheritable
      if (setgroups(1, &docker_gid) != 0 || setresgid(user.gid, user.gid, user.gid) != 0 ||
          setresuid(user.uid, user.uid, user.uid) != 0)
        _exit(123);
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // after the credentials change, which clears it
      execve(argv[0], argv, envp);
      _exit(127);
    }
    // Our copies of the sockets close here: the gate holds them alone.
    for (int i = 0; i < 300; ++i) {
      if (ping(services.front().socket)) return;
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("the gate exited at start:\n" + read_file(log_path));
      }
      std::this_thread::sleep_for(20ms);
    }
    stop();
    throw std::runtime_error("the gate does not answer /_ping:\n" + read_file(log_path));
  }
  ~Gate() { stop(); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  pid_t pid() const { return pid_; }
  void stop() {
    if (pid_ > 0) stop_child(pid_, 2s);
    pid_ = -1;
    for (const auto& service : services_) std::filesystem::remove(service.socket);
  }

 private:
  std::vector<GateService> services_;
  pid_t pid_ = -1;
};

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
                  const Side& gate, Samples& samples) {
  const std::vector<std::string> logs = {"/usr/bin/docker", "logs", id};
  const auto client = [&](const Side& on, std::vector<double>& whole, std::vector<double>& stream) {
    return [&]() {
      const auto r = run(logs, on.as);
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
  interleave(options.stream_runs, {client(direct, samples.logs_direct, samples.logs_stream_direct),
                                   client(gate, samples.logs_gate, samples.logs_stream_gate)});
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
    services.push_back({name, dir + "/pss/" + name, dir + "/pss/" + std::to_string(i) + ".sock"});
  }
  std::filesystem::create_directories(dir + "/pss");
  std::vector<double> samples;
  for (int start = 0; start < options.pss_starts; ++start) {
    Gate gate(program, user, services, dir + "/gate-pss.log");
    for (const auto& service : services)
      if (!ping(service.socket)) error("no /_ping answer on " + service.socket);
    std::this_thread::sleep_for(1s);
    samples.push_back(pss_kib(gate.pid()));
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

    const GateService service{name, dir.path() + "/root", dir.path() + "/gate.sock"};
    Gate gate(program, user, {service}, dir.path() + "/gate.log");
    const Side direct = side("direct", kDockerSocket, dir.path()), through = side("gate", service.socket, dir.path());
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
    measure_logs(*options, id, bytes, direct, through, samples);
    if (waitpid(gate.pid(), nullptr, WNOHANG) != 0) error("the gate exited during the measurements");
    gate.stop();

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
