#include "dockergate_process.h"

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

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "dockergate.capnp.h"
#include "unique_fd.h"

namespace pgod::test {
namespace {

UniqueFd listening_socket(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) throw std::runtime_error("socket path too long: " + path);
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  std::error_code ignored;
  std::filesystem::remove(path, ignored);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      listen(fd.get(), 64) != 0)
    throw std::runtime_error("cannot listen on " + path + ": " + strerror(errno));
  return fd;
}

// The settings message pgod sends (Supervisor::gate_offer), on a memfd; socket i at fd 4 + i.
UniqueFd settings_memfd(const DockerGateOptions& options, const std::vector<DockerGateService>& services) {
  capnp::MallocMessageBuilder message;
  auto settings = message.initRoot<rpc::DockerGateSettings>();
  settings.setDockerSocket(options.docker_socket);
  settings.setDebug(options.debug);
  auto list = settings.initServices(static_cast<unsigned>(services.size()));
  for (unsigned i = 0; i < services.size(); ++i) {
    const auto& service = services[i];
    list[i].setName(service.name);
    list[i].setProject(service.project);
    auto roots = list[i].initBindRoots(static_cast<unsigned>(service.bind_roots.size()));
    for (unsigned k = 0; k < service.bind_roots.size(); ++k) roots.set(k, service.bind_roots[k]);
    auto networks = list[i].initNetworks(static_cast<unsigned>(service.networks.size()));
    for (unsigned k = 0; k < service.networks.size(); ++k) networks.set(k, service.networks[k]);
    list[i].setSocketFd(static_cast<int>(4 + i));
  }
  UniqueFd memfd(memfd_create("dockergate-settings", MFD_CLOEXEC));
  if (!memfd) throw std::runtime_error(std::string("memfd_create: ") + strerror(errno));
  capnp::writeMessageToFd(memfd.get(), message);
  if (lseek(memfd.get(), 0, SEEK_SET) != 0) throw std::runtime_error(std::string("lseek: ") + strerror(errno));
  return memfd;
}

gid_t docker_gid() {
  const group* entry = getgrnam("docker");
  if (entry == nullptr) throw std::runtime_error("no docker group");
  return entry->gr_gid;
}

}  // namespace

bool docker_ping(const std::string& socket_path, std::chrono::seconds timeout) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof address.sun_path) return false;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof address.sun_path - 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) return false;
  timeval limit{static_cast<time_t>(timeout.count()), 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  const std::string request = "GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: pgod-test\r\n\r\n";
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

DockerGateProcess::DockerGateProcess(const DockerGateOptions& options, const std::vector<DockerGateService>& services) {
  if (options.program.empty()) throw std::runtime_error("no docker gate program");
  std::string dir = options.socket_dir;
  if (dir.empty()) {
    own_dir_ = std::make_unique<TempDir>();
    dir = own_dir_->path();
  }
  std::filesystem::create_directories(dir);
  log_ = options.log.empty() ? dir + "/dockergate.log" : options.log;

  // Everything that may allocate or fail is done before the fork.
  std::vector<UniqueFd> fds;
  fds.push_back(settings_memfd(options, services));
  for (const auto& service : services) {
    const std::string path = dir + "/" + service.name + ".sock";
    fds.push_back(listening_socket(path));
    sockets_.emplace_back(service.name, path);
  }
  UniqueFd log(open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!log || !null) throw std::runtime_error("cannot open the gate's log " + log_ + " or /dev/null");
  const std::optional<gid_t> docker = options.user ? std::optional<gid_t>(docker_gid()) : std::nullopt;
  const DockerGateUser user = options.user.value_or(DockerGateUser{});
  std::string program = options.program, arg_fd = "--settings-fd", arg_three = "3";
  char* argv[] = {program.data(), arg_fd.data(), arg_three.data(), nullptr};
  std::string env_path = "PATH=/usr/bin:/bin", env_home = "HOME=/nonexistent";
  char* envp[] = {env_path.data(), env_home.data(), nullptr};
  // The sources: settings and sockets (to 3, 4, ...), then the log and /dev/null (to 0, 1, 2).
  std::vector<int> sources;
  for (const auto& fd : fds) sources.push_back(fd.get());
  sources.push_back(log.get());
  sources.push_back(null.get());
  const int targets = static_cast<int>(fds.size());
  const int above = 3 + targets;  // above every target number
  std::vector<int> high(sources.size(), -1);

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
  if (pid_ == 0) {
    // Every source to a number above the targets first, so that no move overwrites another.
    for (std::size_t i = 0; i < sources.size(); ++i) {
      high[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, above);
      if (high[i] < 0) _exit(120);
    }
    const int high_log = high[sources.size() - 2], high_null = high[sources.size() - 1];
    if (dup2(high_null, 0) != 0 || dup2(high_log, 1) != 1 || dup2(high_log, 2) != 2) _exit(122);
    for (int i = 0; i < targets; ++i)
      if (dup2(high[static_cast<std::size_t>(i)], 3 + i) != 3 + i) _exit(121);  // dup2: the copy is inheritable
    if (docker) {
      if (setgroups(1, &*docker) != 0 || setresgid(user.gid, user.gid, user.gid) != 0 ||
          setresuid(user.uid, user.uid, user.uid) != 0)
        _exit(123);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // after the credentials change, which clears it
    execve(argv[0], argv, envp);
    _exit(127);
  }
  // Our copies of the sockets close here: the gate holds them alone, and a gate that dies then
  // refuses connections.
}

DockerGateProcess::~DockerGateProcess() { stop(); }

void DockerGateProcess::wait_ready(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (const auto& [name, path] : sockets_) {
    while (!docker_ping(path)) {
      if (pid_ <= 0) throw std::runtime_error("the docker gate is not running");
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("the docker gate exited at start:\n" + log_text());
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("the docker gate does not answer /_ping on " + path + ":\n" + log_text());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

void DockerGateProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ > 0) stop_child(pid_, grace);
  pid_ = -1;
  std::error_code ignored;
  for (const auto& [name, path] : sockets_) std::filesystem::remove(path, ignored);
}

const std::string& DockerGateProcess::socket(const std::string& name) const {
  const auto found =
      std::find_if(sockets_.begin(), sockets_.end(), [&](const auto& entry) { return entry.first == name; });
  if (found == sockets_.end()) throw std::runtime_error("the docker gate serves no service " + name);
  return found->second;
}

std::string DockerGateProcess::log_text() const { return read_file(log_); }

}  // namespace pgod::test
