// pgod: the root supervisor. Reads pgo.toml, starts one confined pgod-worker per service and
// the pgod-gateway, keeps them running, reloads on SIGHUP or a config change, and stops them
// on SIGTERM (containers keep running). `--check` (the config, and before an upgrade the
// deployed compose models), `--status` and `--restart-worker` are the one-shot modes.
#include <fcntl.h>
#include <fmt/format.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <limits.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "compose_program.h"
#include "config.h"
#include "control.h"
#include "deployed_models.h"
#include "engine_check.h"
#include "fs_ops.h"
#include "host_key.h"
#include "listen_address.h"
#include "logging.h"
#include "options.h"
#include "rpc_listener.h"
#include "seccomp_filter.h"
#include "sockets.h"
#include "supervisor.h"
#include "system_call.h"

namespace {

using pgod::Done;
using pgod::Expected;
using pgod::Unexpected;
using pgod::supervisor::Identity;
using pgod::supervisor::Options;
using pgod::supervisor::Supervisor;
using pgod::supervisor::SupervisorSettings;

// --check, start and every reload judge the file by the same rules: the users of this host,
// and the gateway's user, which no service may have.
pgod::Expected<pgod::config::Config, pgod::config::ConfigErrors> load_config(const Options& options) {
  return pgod::config::load_config(
      options.config, pgod::config::host_validation_context(!options.datadir.empty(), options.gateway_user,
                                                            options.docker_direct ? "" : options.dockergate_user));
}

// The directory pgod's own executable is in: pgod-worker and pgod-gateway are installed beside it.
std::string own_directory() {
  char path[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0) return "";
  std::string text(path, static_cast<std::size_t>(length));
  return text.substr(0, text.rfind('/'));
}

// "path: reason" when `path` is not a program pgod may run.
Expected<Done, std::string> check_program(const std::string& path) {
  return pgod::check_call(access(path.c_str(), X_OK), path);
}

std::string worker_program(const Options& options) {
  return options.worker_program.empty() ? own_directory() + "/pgod-worker" : options.worker_program;
}

std::string joined(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : std::string(separator)) + item;
  return out;
}

// Before an upgrade: the services whose deployed compose model this version's policy refuses.
// Their workers will recheck it at start and go BROKEN, leaving the containers as they are.
// Not a config error, so --check still exits 0. The models are judged by this version's
// pgod-worker as each service's user (pgod never reads them), so only root can ask.
void check_deployed_models(const Options& options, const pgod::config::Config& config) {
  pgod::supervisor::ModelJudge judge;
  judge.layout = {options.dir, options.datadir, options.rundir};
  struct stat info {};
  if (lstat(judge.layout.state_root().c_str(), &info) != 0) return;  // nothing deployed from this -d
  const auto skipped = [&](const std::string& why) {
    fmt::print("pgod: the deployed compose models in {} were not judged: {}\n", options.dir, why);
  };
  if (geteuid() != 0) return skipped("that needs root (each is judged as its service's user)");
  auto filter = pgod::supervisor::build_worker_filter();
  if (!filter) return skipped("cannot build the worker seccomp filter: " + filter.error());
  judge.filter = &*filter;
  judge.worker_program = worker_program(options);
  if (auto found = check_program(judge.worker_program); !found)
    return skipped(found.error() + " (see --worker-program)");
  judge.defaults.poll_interval = options.duration;
  judge.defaults.compose_program = *pgod::parse_compose_program(options.compose);

  using Outcome = pgod::supervisor::ModelVerdict::Outcome;
  std::vector<std::string> broken, unjudged;
  for (const auto& service : config.services) {
    const auto verdict = pgod::supervisor::judge_deployed_model(service, judge);
    if (verdict.outcome == Outcome::kRefused) {
      fmt::print("service \"{}\": the deployed compose model is refused by this version's policy: {}\n", service.name,
                 joined(verdict.reasons, "; "));
      broken.push_back(service.name);
    } else if (verdict.outcome == Outcome::kUnjudged) {
      fmt::print("service \"{}\": the deployed compose model was not judged: {}\n", service.name,
                 joined(verdict.reasons, "; "));
      unjudged.push_back(service.name);
    }
  }
  if (!broken.empty())
    fmt::print("pgod: {} service{} would go BROKEN after the upgrade ({} running as deployed): {}\n", broken.size(),
               broken.size() == 1 ? "" : "s", broken.size() == 1 ? "it keeps" : "they keep", joined(broken, ", "));
  if (!unjudged.empty())
    fmt::print("pgod: {} service{} not judged: {}\n", unjudged.size(), unjudged.size() == 1 ? "" : "s",
               joined(unjudged, ", "));
}

int check(const Options& options) {
  auto config = load_config(options);
  if (!config) {
    for (const auto& error : config.error()) fmt::print(stderr, "{}\n", error.to_string());
    fmt::print(stderr, "pgod: {}: {} error{}\n", options.config, config.error().size(),
               config.error().size() == 1 ? "" : "s");
    return 1;
  }
  std::vector<std::string> names;
  for (const auto& service : config->services) names.push_back(service.name);
  fmt::print("pgod: {}: OK, {} service{}{}{}\n", options.config, config->services.size(),
             config->services.size() == 1 ? "" : "s", names.empty() ? "" : ": ", joined(names, ", "));
  check_deployed_models(options, *config);
  if (geteuid() == 0) fmt::print("{}\n", pgod::supervisor::describe_docker_engine(options.docker_socket));
  return 0;
}

std::optional<pgod::config::Config> load(const Options& options) {
  auto config = load_config(options);
  if (!config) {
    for (const auto& error : config.error()) spdlog::error("{}", error.to_string());
    return std::nullopt;
  }
  return std::move(*config);
}

// Watches the config file's directory (editors replace files by rename) and calls `changed`
// a moment after the last event that names the file.
class ConfigWatch {
 public:
  ConfigWatch(kj::AsyncIoContext& io, const std::string& path, kj::Function<void()> changed)
      : io_(io), changed_(kj::mv(changed)) {
    const auto slash = path.rfind('/');
    directory_ = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    name_ = slash == std::string::npos ? path : path.substr(slash + 1);
    fd_ = pgod::UniqueFd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd_ || inotify_add_watch(fd_.get(), directory_.c_str(),
                                  IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM) < 0) {
      const int error = errno;
      spdlog::error("cannot watch {} for config changes: {}; reload with SIGHUP", directory_, pgod::errno_text(error));
      return;
    }
    observer_ = kj::heap<kj::UnixEventPort::FdObserver>(io.unixEventPort, fd_.get(),
                                                        kj::UnixEventPort::FdObserver::OBSERVE_READ);
    loop_ = watch().eagerlyEvaluate(
        [](kj::Exception&& e) { spdlog::error("config watch failed: {}", e.getDescription().cStr()); });
  }

 private:
  kj::Promise<void> watch() {
    return observer_->whenBecomesReadable().then([this]() {
      alignas(inotify_event) char buffer[8192];
      bool ours = false;
      for (;;) {
        const ssize_t got = read(fd_.get(), buffer, sizeof buffer);
        if (got <= 0) break;
        for (ssize_t offset = 0; offset < got;) {
          const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
          if (event->len > 0 && name_ == event->name) ours = true;
          offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
        }
      }
      // An editor's save is several events: reload once, after they settle.
      if (ours)
        settle_ = io_.provider->getTimer()
                      .afterDelay(300 * kj::MILLISECONDS)
                      .then([this]() { changed_(); })
                      .eagerlyEvaluate(nullptr);
      return watch();
    });
  }

  kj::AsyncIoContext& io_;
  kj::Function<void()> changed_;
  std::string directory_, name_;
  pgod::UniqueFd fd_;
  kj::Own<kj::UnixEventPort::FdObserver> observer_;
  kj::Promise<void> loop_ = nullptr;
  kj::Promise<void> settle_ = nullptr;
};

// ---- serve(): the steps of a supervisor's life, in order ----------------------------------

// Start-up failed: the reason is logged and pgod exits 1.
int critical(const std::string& why) {
  spdlog::critical("{}", why);
  return 1;
}

Expected<Done, std::string> check_root(const Options& options) {
  if (geteuid() == 0 || options.no_root_check) return Done{};
  return Unexpected{
      std::string("pgod must run as root: it starts each service's worker as that service's user "
                  "(for tests only: --no-root-check)")};
}

// One pgod per run directory: a second one would fight the first over sockets and workers.
// The lock lasts as long as the returned fd is open.
Expected<pgod::UniqueFd, std::string> lock_run_directory(const Options& options) {
  if (auto made = pgod::supervisor::ensure_directory(options.rundir, 0, 0, 0755); !made && !options.no_root_check)
    return Unexpected{made.error()};
  const std::string lock_path = options.rundir + "/pgod.lock";
  pgod::UniqueFd lock(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock || flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    return Unexpected{fmt::format(
        "{}: {}", lock_path, error == EWOULDBLOCK ? "another pgod runs with this --rundir" : pgod::errno_text(error))};
  }
  return lock;
}

// What the command line tells the supervisor about layout, workers' defaults and mounting.
SupervisorSettings supervisor_settings(const Options& options) {
  SupervisorSettings settings;
  settings.layout = {options.dir, options.datadir, options.rundir};
  settings.defaults.poll_interval = options.duration;
  settings.defaults.debug = options.debug;
  settings.defaults.compose_program = *pgod::parse_compose_program(options.compose);
  if (options.mount_with_systemd) {
    // systemd gives up on the mount before pgod gives up waiting (60 s), so no mount job is
    // left running in PID 1 to succeed after pgod reported it failed.
    settings.mount_command = {"/usr/bin/systemd-mount", "--collect", "--property=TimeoutSec=50s"};
    settings.umount_command = {"/usr/bin/systemd-umount"};
  } else {
    settings.mount_command = {options.mount_program};
    settings.umount_command = {options.umount_program};
  }
  settings.path_prefix = options.path_prefix;
  settings.change_identity = geteuid() == 0;
  return settings;
}

Expected<Done, std::string> find_worker_program(const Options& options, SupervisorSettings& settings) {
  settings.worker_program = worker_program(options);
  if (auto found = check_program(settings.worker_program); !found)
    return Unexpected{fmt::format("the worker program: {} (see --worker-program)", found.error())};
  return Done{};
}

// The gateway's user: its uid may connect to the sockets, its group owns them. Without one
// (allowed only with --no-gateway), only root can use the worker sockets.
Expected<std::optional<Identity>, std::string> find_gateway_user(const Options& options, SupervisorSettings& settings) {
  auto identity = pgod::supervisor::lookup_user(options.gateway_user, false, nullptr);
  if (identity) {
    settings.gateway = *identity;
    settings.defaults.gateway_uid = identity->uid;
    return std::optional<Identity>(*identity);
  }
  if (!options.no_gateway)
    return Unexpected{
        fmt::format("the gateway's user: {} (create it with `useradd --system {}`, or see --gateway-user "
                    "and --no-gateway)",
                    identity.error(), options.gateway_user)};
  spdlog::warn("the gateway's user: {}: only root can use the worker sockets", identity.error());
  return std::optional<Identity>();
}

Expected<Done, std::string> find_gateway_program(const Options& options, SupervisorSettings& settings) {
  settings.gateway_program =
      options.gateway_program.empty() ? own_directory() + "/pgod-gateway" : options.gateway_program;
  if (auto found = check_program(settings.gateway_program); !found)
    return Unexpected{fmt::format("the gateway program: {} (see --gateway-program)", found.error())};
  return Done{};
}

// The docker gate: its user (with the docker group, which no service user gets) and program, or,
// with --no-dockergate, the socket its own unit takes the services' sockets from. With
// --docker-direct (tests with a stand-in docker) there is no gate.
Expected<Done, std::string> find_dockergate(const Options& options, SupervisorSettings& settings,
                                            pgod::UniqueFd& handover) {
  if (options.docker_direct) return Done{};
  std::string note;
  auto identity = pgod::supervisor::lookup_user(options.dockergate_user, true, &note);
  if (!identity)
    return Unexpected{
        fmt::format("the docker gate's user: {} (create it with `useradd --system {}`; see "
                    "--dockergate-user)",
                    identity.error(), options.dockergate_user)};
  if (!note.empty()) return Unexpected{fmt::format("the docker gate's user: {}", note)};
  if (identity->uid == 0) return Unexpected{std::string("the docker gate's user may not be root")};
  settings.dockergate = *identity;
  settings.docker_socket = options.docker_socket;
  settings.defaults.docker_gate = true;
  if (options.no_dockergate) {
    // Its group may connect; the hand-over serves only the gate's uid.
    auto socket = pgod::supervisor::bind_unix_socket(options.rundir + "/dockergate.sock", identity->gid);
    if (!socket) return Unexpected{"the docker gate's hand-over socket: " + socket.error()};
    settings.dockergate_handover_fd = socket->get();
    handover = std::move(*socket);
    return Done{};
  }
  settings.dockergate_program =
      options.dockergate_program.empty() ? own_directory() + "/pgod-dockergate" : options.dockergate_program;
  if (auto found = check_program(settings.dockergate_program); !found)
    return Unexpected{fmt::format("the docker gate program: {} (see --dockergate-program)", found.error())};
  return Done{};
}

// The gateway's SSH, metrics and hook listeners, bound by root (the gateway may not bind low ports).
// pgod keeps them open for as long as it runs: each start of the gateway inherits them.
Expected<std::vector<pgod::UniqueFd>, std::string> open_gateway_listeners(const Options& options,
                                                                          SupervisorSettings& settings) {
  std::vector<pgod::UniqueFd> sockets;
  for (auto [flag, text] : {std::pair{"-s/--ssh", options.ssh}, std::pair{"-m/--metrics", options.metrics},
                            std::pair{"--hooks", options.hooks}}) {
    auto address = pgod::parse_listen_address(text);  // checked by parse_options
    auto socket = pgod::bind_listen_address(*address, flag);
    if (!socket) return Unexpected{socket.error()};
    settings.gateway_fds.push_back(socket->get());
    sockets.push_back(std::move(*socket));
  }
  return sockets;
}

// Made on first start when missing, as sshd-keygen does; checked (root-only, a key) every start.
Expected<Done, std::string> load_host_key(const Options& options, SupervisorSettings& settings) {
  auto host_key = pgod::supervisor::ensure_host_key(options.host_key);
  if (!host_key) return Unexpected{fmt::format("the gateway's host key: {} (see --host-key)", host_key.error())};
  spdlog::info("{} host key {} ({})", host_key->created ? "created the" : "the", options.host_key,
               host_key->fingerprint);
  settings.gateway_host_key = options.host_key;
  return Done{};
}

void set_gateway_args(const Options& options, SupervisorSettings& settings) {
  settings.gateway_args = {"--rundir", options.rundir};
  if (options.debug) settings.gateway_args.push_back("--debug");
  settings.gateway_args.insert(settings.gateway_args.end(), options.gateway_limit_args.begin(),
                               options.gateway_limit_args.end());
}

// The signals are claimed before the event loop starts: kj reaps the children (SIGCHLD) and
// turns SIGTERM, SIGINT and SIGHUP into events; a closed pipe is an error, not a death.
kj::AsyncIoContext start_event_loop() {
  kj::UnixEventPort::captureChildExit();
  for (int signal_number : {SIGTERM, SIGINT, SIGHUP}) kj::UnixEventPort::captureSignal(signal_number);
  signal(SIGPIPE, SIG_IGN);
  return kj::setupAsyncIo();
}

// supervisor.sock: pgod --status and pgod --restart-worker (as root) and the gateway (its group
// may connect, its uid is let in).
struct ControlSocket {
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Promise<void> serving = nullptr;  // answers connections on `listener`
};

Expected<ControlSocket, std::string> open_control_socket(kj::AsyncIoContext& io, Supervisor& supervisor,
                                                         const Options& options,
                                                         const std::optional<Identity>& gateway_user) {
  auto socket =
      pgod::supervisor::bind_unix_socket(options.rundir + "/supervisor.sock", gateway_user ? gateway_user->gid : 0);
  if (!socket) return Unexpected{socket.error()};
  ControlSocket control;
  control.listener =
      io.lowLevelProvider->wrapListenSocketFd(socket->release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  control.serving = pgod::serve_unix_rpc(*control.listener, pgod::supervisor::make_control_service(supervisor),
                                         gateway_user ? gateway_user->uid : 0, "supervisor socket")
                        .eagerlyEvaluate([](kj::Exception&& e) {
                          spdlog::error("supervisor socket: {}", e.getDescription().cStr());
                        });
  return control;
}

// Reloads the config on SIGHUP and, with --restart, when the file changes. An invalid config
// leaves the running services as they are.
class Reloads {
 public:
  Reloads(kj::AsyncIoContext& io, Supervisor& supervisor, const Options& options)
      : io_(io), supervisor_(supervisor), options_(options) {
    if (options.restart)
      watch_ = std::make_unique<ConfigWatch>(io, options.config, [this]() { reload("config changed"); });
    hangups_ = on_hangup().eagerlyEvaluate(nullptr);
  }
  Reloads(const Reloads&) = delete;  // its promises hold `this`
  Reloads& operator=(const Reloads&) = delete;

 private:
  void reload(const char* why) {
    spdlog::info("{}: reloading {}", why, options_.config);
    sd_notify(0, "RELOADING=1");
    if (auto fresh = load(options_)) {
      supervisor_.apply(std::move(*fresh));
      spdlog::info("reloaded: {}", supervisor_.summary());
    } else {
      spdlog::error("{}: invalid config; the running services are left as they are", options_.config);
    }
    sd_notify(0, fmt::format("READY=1\nSTATUS={}", supervisor_.summary()).c_str());
  }

  kj::Promise<void> on_hangup() {
    return io_.unixEventPort.onSignal(SIGHUP).then([this](siginfo_t) {
      reload("SIGHUP");
      return on_hangup();
    });
  }

  kj::AsyncIoContext& io_;
  Supervisor& supervisor_;
  const Options& options_;
  std::unique_ptr<ConfigWatch> watch_;
  kj::Promise<void> hangups_ = nullptr;
};

// systemd's watchdog, when the unit sets WatchdogSec=: a ping at half the interval.
class Watchdog {
 public:
  explicit Watchdog(kj::AsyncIoContext& io) : io_(io) {
    if (sd_watchdog_enabled(0, &interval_usec_) > 0 && interval_usec_ > 0) pings_ = ping().eagerlyEvaluate(nullptr);
  }
  Watchdog(const Watchdog&) = delete;  // its promise holds `this`
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  kj::Promise<void> ping() {
    return io_.provider->getTimer().afterDelay(interval_usec_ / 2 * kj::MICROSECONDS).then([this]() {
      sd_notify(0, "WATCHDOG=1");
      return ping();
    });
  }

  kj::AsyncIoContext& io_;
  std::uint64_t interval_usec_ = 0;
  kj::Promise<void> pings_ = kj::NEVER_DONE;
};

void announce_ready(kj::AsyncIoContext& io, Supervisor& supervisor) {
  io.waitScope.poll();  // the workers' starts are queued events: let them run before READY
  spdlog::info("pgod {} started: {}", PGOD_VERSION, supervisor.summary());
  sd_notify(0, fmt::format("READY=1\nSTATUS={}", supervisor.summary()).c_str());
}

// Start-up failed after the workers started: they are stopped again (the containers keep
// running) before pgod exits 1.
int critical_after_start(kj::AsyncIoContext& io, Supervisor& supervisor, const std::string& why) {
  spdlog::critical("{}", why);
  supervisor.shutdown().wait(io.waitScope);
  return 1;
}

// Runs the event loop (workers, reloads, the control socket) until SIGTERM or SIGINT.
void run_until_stop_signal(kj::AsyncIoContext& io) {
  auto signalled =
      io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT)).wait(io.waitScope);
  spdlog::info("signal {}: stopping the workers (containers keep running)", signalled.si_signo);
}

void shut_down(kj::AsyncIoContext& io, Supervisor& supervisor) {
  sd_notify(0, "STOPPING=1");
  supervisor.shutdown().wait(io.waitScope);
  spdlog::info("stopped");
}

int serve(const Options& options) {
  pgod::setup_logging("pgod", options.debug);
  if (auto root = check_root(options); !root) return critical(root.error());
  auto config = load(options);
  if (!config) return critical(fmt::format("{}: invalid config; nothing was started", options.config));
  auto lock = lock_run_directory(options);  // held until pgod exits
  if (!lock) return critical(lock.error());
  auto filter = pgod::supervisor::build_worker_filter();
  if (!filter) return critical("cannot build the worker seccomp filter: " + filter.error());

  auto settings = supervisor_settings(options);
  if (auto found = find_worker_program(options, settings); !found) return critical(found.error());
  auto gateway_user = find_gateway_user(options, settings);
  if (!gateway_user) return critical(gateway_user.error());
  pgod::UniqueFd dockergate_handover;  // kept open for as long as pgod runs
  if (auto gate = find_dockergate(options, settings, dockergate_handover); !gate) return critical(gate.error());
  std::vector<pgod::UniqueFd> gateway_listeners;
  if (!options.no_gateway) {
    if (auto found = find_gateway_program(options, settings); !found) return critical(found.error());
    auto listeners = open_gateway_listeners(options, settings);
    if (!listeners) return critical(listeners.error());
    gateway_listeners = std::move(*listeners);
    if (auto key = load_host_key(options, settings); !key) return critical(key.error());
    set_gateway_args(options, settings);
  }

  auto io = start_event_loop();
  Supervisor supervisor(io, std::move(settings), std::move(*filter));
  if (auto problem = supervisor.start(std::move(*config))) return critical(*problem);  // workers and gateway
  auto control = open_control_socket(io, supervisor, options, *gateway_user);
  if (!control) return critical_after_start(io, supervisor, control.error());
  Reloads reloads(io, supervisor, options);
  Watchdog watchdog(io);
  announce_ready(io, supervisor);
  run_until_stop_signal(io);
  shut_down(io, supervisor);
  return 0;
}

// fds 0-2 must be taken: otherwise a socket opened later could get number 1 or 2 and be
// inherited by every worker as its stdout or stderr.
void fill_standard_fds() {
  for (int fd = open("/dev/null", O_RDWR | O_CLOEXEC); fd >= 0; fd = open("/dev/null", O_RDWR | O_CLOEXEC)) {
    if (fd > 2) {
      close(fd);
      break;
    }
    fcntl(fd, F_SETFD, 0);  // it stands in for stdin/stdout/stderr: keep it across exec
  }
}

int make_host_key(const Options& options) {
  auto ready = pgod::supervisor::ensure_host_key(options.host_key);
  if (!ready) {
    fmt::print(stderr, "pgod: the host key: {}\n", ready.error());
    return 1;
  }
  fmt::print("{} {} ({})\n", options.host_key, ready->created ? "created" : "exists", ready->fingerprint);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  fill_standard_fds();
  auto parsed = pgod::supervisor::parse_options({argv + 1, argv + argc});
  if (!parsed) {
    fmt::print(stderr, "pgod: {}\n", parsed.error());
    return 1;
  }
  const auto& options = parsed->options;
  if (options.help) {
    fmt::print("{}", parsed->usage);
    return 0;
  }
  if (options.version) {
    fmt::print("pgod {}\n", PGOD_VERSION);
    return 0;
  }
  if (options.check) return check(options);
  if (options.make_host_key) return make_host_key(options);
  if (options.status) {
    const int status = pgod::supervisor::print_status(options.rundir + "/supervisor.sock");
    if (status == 0) fmt::print("{}\n", pgod::supervisor::describe_docker_engine(options.docker_socket));
    return status;
  }
  if (!options.restart_worker.empty())
    return pgod::supervisor::request_worker_restart(options.rundir + "/supervisor.sock", options.restart_worker);

  int code = 1;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { code = serve(options); })) {
    spdlog::critical("{}", exception->getDescription().cStr());
    return 1;
  }
  return code;
}
