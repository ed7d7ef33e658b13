// pgod-dockergate: the only holder of the docker socket besides root. Started by pgod (settings
// on an inherited fd, one listening socket per service), or by systemd as its own unit.
//
//   pgod-dockergate --settings-fd N        (pgod's child: settings on fd N, sockets from fd N+1)
//   pgod-dockergate --handover PATH        (its own unit: settings and sockets from pgod over PATH)
//   pgod-dockergate --print-table
//
// Lifecycle: read the settings, check each socket, enter the confinement (private root, no
// capabilities, seccomp), then serve every service's socket until killed, or, with --handover,
// until pgod closes the hand-over (its set of services changed, or pgod restarted): then exit,
// to be started again by systemd with the new set.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "confinement.h"
#include "daemon.h"
#include "dockergate.capnp.h"
#include "fd_passing.h"
#include "flags.h"
#include "gate.h"
#include "logging.h"
#include "routes.h"
#include "service_name.h"
#include "system_call.h"
#include "unique_fd.h"

#ifndef PGOD_VERSION
#define PGOD_VERSION "dev"
#endif

namespace {

using pgod::dockergate::ServedService;

struct Options {
  std::string settings_fd;
  std::string handover;
  bool print_table = false;
  bool version = false;
};

[[noreturn]] void fail(const std::string& message) {
  spdlog::critical("{}", message);
  std::exit(1);
}

Options parse_options(int argc, char** argv) {
  Options options;
  pgod::FlagSet flags("pgod-dockergate");
  flags.add_string(0, "settings-fd", &options.settings_fd, "read the settings from this inherited fd (pgod uses it)",
                   "fd");
  flags.add_string(0, "handover", &options.handover,
                   "take the settings and the services' sockets from pgod on this unix socket (the systemd unit)",
                   "path");
  flags.add_bool(0, "print-table", &options.print_table, "print the table of allowed Docker API calls and exit");
  flags.add_bool(0, "version", &options.version, "print the version and exit");
  auto rest = flags.parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!rest || !rest->empty()) {
    fmt::print(stderr, "pgod-dockergate: {}\n{}", rest ? "unexpected arguments" : rest.error(),
               flags.usage("--settings-fd N | --print-table"));
    std::exit(2);
  }
  return options;
}

void print_table() {
  for (const auto& route : pgod::dockergate::gate_routes())
    fmt::print("{:<6} {:<32} {}\n", route.method, route.pattern, route.why);
}

int parse_fd(const std::string& text) {
  if (text.empty() || text.size() > 6 || text.find_first_not_of("0123456789") != std::string::npos)
    fail(fmt::format("--settings-fd needs a file descriptor number, got \"{}\"", text));
  return std::stoi(text);
}

capnp::ReaderOptions settings_limits() {
  capnp::ReaderOptions limits;
  limits.traversalLimitInWords = 8 << 20;
  limits.nestingLimit = 8;
  return limits;
}

// The settings, whichever way they came; `fds` holds the services' sockets when they came over
// the hand-over (socketFd is then an index into it).
struct Settings {
  kj::Array<capnp::word> words;
  kj::Own<capnp::MessageReader> message;
  std::vector<pgod::UniqueFd> fds;
  pgod::UniqueFd handover;  // open while pgod keeps the gate's set
};

Settings read_settings(const Options& options) {
  Settings settings;
  std::string bytes;
  if (!options.handover.empty()) {
    auto connected = pgod::dockergate::connect_unix(options.handover);
    if (!connected) fail("--handover: " + connected.error());
    auto received = pgod::receive_with_fds(connected->get(), 8 << 20, 65536);
    if (!received) fail("--handover: " + received.error());
    bytes = std::move(received->message);
    settings.fds = std::move(received->fds);
    settings.handover = std::move(*connected);
  } else {
    pgod::UniqueFd fd(parse_fd(options.settings_fd));
    auto read = pgod::read_bounded(fd.get(), 8 << 20, "--settings-fd");
    if (!read) fail(read.error());
    bytes = std::move(*read);
  }
  if (bytes.size() % sizeof(capnp::word) != 0) fail("the settings are not a Cap'n Proto message");
  settings.words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(settings.words.begin(), bytes.data(), bytes.size());
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 settings.message = kj::heap<capnp::FlatArrayMessageReader>(settings.words, settings_limits());
                 settings.message->getRoot<pgod::rpc::DockerGateSettings>();
               })) {
    fail(fmt::format("not a settings message: {}", exception->getDescription().cStr()));
  }
  return settings;
}

// Each service's socket must be what pgod said: a listening unix socket.
void check_listener(int fd, const std::string& service) {
  int value = 0;
  socklen_t size = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &size) != 0 || value != AF_UNIX)
    fail(fmt::format("[{}] fd {} is not a unix socket", service, fd));
  size = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &size) != 0 || value != 1)
    fail(fmt::format("[{}] fd {} is not listening", service, fd));
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) fail(pgod::os_error("fcntl(FD_CLOEXEC)", service, errno));
}

struct Served {
  std::unique_ptr<ServedService> service;
  pgod::UniqueFd listener;
};

std::vector<Served> take_services(pgod::rpc::DockerGateSettings::Reader settings, std::vector<pgod::UniqueFd>& handed,
                                  bool handed_over) {
  std::vector<Served> served;
  for (auto entry : settings.getServices()) {
    auto service = std::make_unique<ServedService>();
    service->service.name = entry.getName().cStr();
    service->service.project = entry.getProject().cStr();
    if (!pgod::is_valid_service_name(service->service.name) ||
        service->service.project != pgod::compose_project_name(service->service.name))
      fail(fmt::format("settings: service \"{}\" has no valid name and project", service->service.name));
    for (auto root : entry.getBindRoots()) service->service.bind_roots.emplace_back(root.cStr());
    for (auto network : entry.getNetworks()) service->service.allowed_networks.emplace_back(network.cStr());
    service->log = pgod::service_logger(service->service.name);
    pgod::UniqueFd listener;
    if (!handed_over) {
      listener = pgod::UniqueFd(entry.getSocketFd());
    } else {
      const auto index = static_cast<std::size_t>(entry.getSocketFd());
      if (entry.getSocketFd() < 0 || index >= handed.size() || !handed[index])
        fail(fmt::format("[{}] the hand-over has no socket {}", service->service.name, entry.getSocketFd()));
      listener = std::move(handed[index]);
    }
    check_listener(listener.get(), service->service.name);
    served.push_back({std::move(service), std::move(listener)});
  }
  return served;
}

// Each service knows the other services' projects: their images are not its own.
void tell_other_projects(std::vector<Served>& served) {
  for (auto& entry : served)
    for (const auto& other : served)
      if (&other != &entry) entry.service->service.other_projects.push_back(other.service->service.project);
}

std::vector<std::string> all_roots(const std::vector<Served>& served) {
  std::vector<std::string> roots;
  for (const auto& entry : served)
    roots.insert(roots.end(), entry.service->service.bind_roots.begin(), entry.service->service.bind_roots.end());
  return roots;
}

void confine(std::string& docker_socket, const std::vector<Served>& served) {
  auto resolved = pgod::dockergate::enter_private_root(docker_socket, all_roots(served));
  if (!resolved) fail("confinement: " + resolved.error());
  docker_socket = *resolved;
  if (auto dropped = pgod::dockergate::drop_capabilities(); !dropped) fail("confinement: " + dropped.error());
  if (auto filtered = pgod::dockergate::install_dockergate_filter(); !filtered)
    fail("confinement: " + filtered.error());
}

[[noreturn]] void serve(const std::string& docker_socket, std::vector<Served>& served, int handover) {
  const pgod::dockergate::GateLimits limits;
  std::vector<pollfd> fds;
  for (const auto& entry : served) fds.push_back({entry.listener.get(), POLLIN, 0});
  fds.push_back({handover, POLLIN | POLLRDHUP, 0});  // -1 (no hand-over) is ignored by poll
  while (true) {
    if (pgod::retry_eintr([&] { return poll(fds.data(), fds.size(), -1); }) < 0)
      fail(pgod::os_error("poll", "", errno));
    if (fds.back().revents != 0) {
      spdlog::info("pgod closed the hand-over (its services changed, or it restarted): exiting to take the new set");
      std::exit(0);
    }
    for (std::size_t i = 0; i + 1 < fds.size(); ++i)
      if (fds[i].revents & POLLIN) pgod::dockergate::accept_one(docker_socket, *served[i].service, fds[i].fd, limits);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  if (options.version) return fmt::print("pgod-dockergate {}\n", PGOD_VERSION), 0;
  if (options.print_table) return print_table(), 0;
  pgod::setup_logging("pgod-dockergate", false);
  if (options.settings_fd.empty() == options.handover.empty()) fail("one of --settings-fd and --handover is required");
  auto taken = read_settings(options);
  auto settings = taken.message->getRoot<pgod::rpc::DockerGateSettings>();
  pgod::setup_logging("pgod-dockergate", settings.getDebug());
  signal(SIGPIPE, SIG_IGN);  // a client that goes mid-reply is an error on that call, not the gate's end
  std::string docker_socket = settings.getDockerSocket().cStr();
  auto served = take_services(settings, taken.fds, static_cast<bool>(taken.handover));
  tell_other_projects(served);
  confine(docker_socket, served);
  spdlog::info("serving {} service(s); dockerd at {}", served.size(), docker_socket);
  serve(docker_socket, served, taken.handover ? taken.handover.get() : -1);
}
