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
#include <cstring>

#include "compose_program.h"
#include "config.h"
#include "control.h"
#include "deployed_models.h"
#include "fs_ops.h"
#include "host_key.h"
#include "listen_address.h"
#include "logging.h"
#include "options.h"
#include "rpc_listener.h"
#include "seccomp_filter.h"
#include "sockets.h"
#include "supervisor.h"

namespace {

using pgod::supervisor::Options;

// --check, start and every reload judge the file by the same rules: the users of this host,
// and the gateway's user, which no service may have.
pgod::Expected<pgod::config::Config, pgod::config::ConfigErrors> load_config(const Options& options) {
  return pgod::config::load_config(
      options.config, pgod::config::host_validation_context(!options.datadir.empty(), options.gateway_user));
}

// The directory pgod's own executable is in: pgod-worker and pgod-gateway are installed beside it.
std::string own_directory() {
  char path[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0) return "";
  std::string text(path, static_cast<std::size_t>(length));
  return text.substr(0, text.rfind('/'));
}

std::optional<std::string> check_program(const std::string& path) {
  if (access(path.c_str(), X_OK) != 0) return fmt::format("{}: {}", path, std::strerror(errno));
  return std::nullopt;
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
  if (auto problem = check_program(judge.worker_program)) return skipped(*problem + " (see --worker-program)");
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
      spdlog::error("cannot watch {} for config changes: {}; reload with SIGHUP", directory_, std::strerror(errno));
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

int serve(const Options& options) {
  pgod::setup_logging("pgod", options.debug);
  if (geteuid() != 0 && !options.no_root_check) {
    spdlog::critical(
        "pgod must run as root: it starts each service's worker as that service's user "
        "(for tests only: --no-root-check)");
    return 1;
  }
  auto config = load(options);
  if (!config) {
    spdlog::critical("{}: invalid config; nothing was started", options.config);
    return 1;
  }
  // One pgod per run directory: a second one would fight the first over sockets and workers.
  if (auto made = pgod::supervisor::ensure_directory(options.rundir, 0, 0, 0755); !made && !options.no_root_check) {
    spdlog::critical("{}", made.error());
    return 1;
  }
  const std::string lock_path = options.rundir + "/pgod.lock";
  pgod::UniqueFd lock(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock || flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    spdlog::critical("{}: {}", lock_path,
                     errno == EWOULDBLOCK ? "another pgod runs with this --rundir" : std::strerror(errno));
    return 1;
  }
  auto filter = pgod::supervisor::build_worker_filter();
  if (!filter) {
    spdlog::critical("cannot build the worker seccomp filter: {}", filter.error());
    return 1;
  }

  pgod::supervisor::SupervisorSettings settings;
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
  const auto directory = own_directory();
  settings.worker_program = worker_program(options);
  if (auto problem = check_program(settings.worker_program)) {
    spdlog::critical("the worker program: {} (see --worker-program)", *problem);
    return 1;
  }
  // The gateway's user: its uid may connect to the sockets, its group owns them.
  std::string note;
  auto gateway_identity = pgod::supervisor::lookup_user(options.gateway_user, false, &note);
  if (gateway_identity) {
    settings.gateway = *gateway_identity;
    settings.defaults.gateway_uid = gateway_identity->uid;
  } else if (!options.no_gateway) {
    spdlog::critical(
        "the gateway's user: {} (create it with `useradd --system {}`, or see --gateway-user "
        "and --no-gateway)",
        gateway_identity.error(), options.gateway_user);
    return 1;
  } else {
    spdlog::warn("the gateway's user: {}: only root can use the worker sockets", gateway_identity.error());
  }

  std::vector<pgod::UniqueFd> gateway_sockets;
  if (!options.no_gateway) {
    settings.gateway_program = options.gateway_program.empty() ? directory + "/pgod-gateway" : options.gateway_program;
    if (auto problem = check_program(settings.gateway_program)) {
      spdlog::critical("the gateway program: {} (see --gateway-program)", *problem);
      return 1;
    }
    for (auto [flag, text] : {std::pair{"-s/--ssh", options.ssh}, std::pair{"-m/--metrics", options.metrics}}) {
      auto address = pgod::parse_listen_address(text);
      auto socket = pgod::bind_listen_address(*address, flag);
      if (!socket) {
        spdlog::critical("{}", socket.error());
        return 1;
      }
      settings.gateway_fds.push_back(socket->get());
      gateway_sockets.push_back(std::move(*socket));
    }
    auto host_key = pgod::supervisor::ensure_host_key(options.host_key);
    if (!host_key) {
      spdlog::critical("the gateway's host key: {} (see --host-key)", host_key.error());
      return 1;
    }
    spdlog::info("{} host key {} ({})", host_key->created ? "created the" : "the", options.host_key,
                 host_key->fingerprint);
    settings.gateway_host_key = options.host_key;
    settings.gateway_args = {"--rundir", options.rundir};
    if (options.debug) settings.gateway_args.push_back("--debug");
    settings.gateway_args.insert(settings.gateway_args.end(), options.gateway_limit_args.begin(),
                                 options.gateway_limit_args.end());
  }

  kj::UnixEventPort::captureChildExit();
  for (int signal_number : {SIGTERM, SIGINT, SIGHUP}) kj::UnixEventPort::captureSignal(signal_number);
  signal(SIGPIPE, SIG_IGN);
  auto io = kj::setupAsyncIo();

  pgod::supervisor::Supervisor supervisor(io, std::move(settings), std::move(*filter));
  if (auto problem = supervisor.start(std::move(*config))) {
    spdlog::critical("{}", *problem);
    return 1;
  }
  auto control_socket = pgod::supervisor::bind_unix_socket(options.rundir + "/supervisor.sock",
                                                           gateway_identity ? gateway_identity->gid : 0);
  if (!control_socket) {
    spdlog::critical("{}", control_socket.error());
    auto stopped = supervisor.shutdown();
    stopped.wait(io.waitScope);
    return 1;
  }
  auto listener =
      io.lowLevelProvider->wrapListenSocketFd(control_socket->release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto serving = pgod::serve_unix_rpc(*listener, pgod::supervisor::make_control_service(supervisor),
                                      gateway_identity ? gateway_identity->uid : 0, "supervisor socket")
                     .eagerlyEvaluate(
                         [](kj::Exception&& e) { spdlog::error("supervisor socket: {}", e.getDescription().cStr()); });

  auto reload = [&](const char* why) {
    spdlog::info("{}: reloading {}", why, options.config);
    sd_notify(0, "RELOADING=1");
    if (auto fresh = load(options)) {
      supervisor.apply(std::move(*fresh));
      spdlog::info("reloaded: {}", supervisor.summary());
    } else {
      spdlog::error("{}: invalid config; the running services are left as they are", options.config);
    }
    sd_notify(0, fmt::format("READY=1\nSTATUS={}", supervisor.summary()).c_str());
  };
  std::unique_ptr<ConfigWatch> watch;
  if (options.restart) watch = std::make_unique<ConfigWatch>(io, options.config, [&]() { reload("config changed"); });
  std::function<kj::Promise<void>()> on_hangup = [&]() {
    return io.unixEventPort.onSignal(SIGHUP).then([&](siginfo_t) {
      reload("SIGHUP");
      return on_hangup();
    });
  };
  auto hangups = on_hangup().eagerlyEvaluate(nullptr);

  // systemd's watchdog, when the unit sets WatchdogSec=: a ping at half the interval.
  std::uint64_t watchdog_usec = 0;
  std::function<kj::Promise<void>()> ping = [&]() {
    return io.provider->getTimer().afterDelay(watchdog_usec / 2 * kj::MICROSECONDS).then([&]() {
      sd_notify(0, "WATCHDOG=1");
      return ping();
    });
  };
  kj::Promise<void> watchdog = kj::NEVER_DONE;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) watchdog = ping().eagerlyEvaluate(nullptr);

  io.waitScope.poll();  // the workers' starts are queued events: let them run before READY
  spdlog::info("pgod {} started: {}", PGOD_VERSION, supervisor.summary());
  sd_notify(0, fmt::format("READY=1\nSTATUS={}", supervisor.summary()).c_str());

  auto signalled =
      io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT)).wait(io.waitScope);
  spdlog::info("signal {}: stopping the workers (containers keep running)", signalled.si_signo);
  sd_notify(0, "STOPPING=1");
  supervisor.shutdown().wait(io.waitScope);
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // fds 0-2 must be taken: otherwise a socket opened later could get number 1 or 2 and be
  // inherited by every worker as its stdout or stderr.
  for (int fd = open("/dev/null", O_RDWR | O_CLOEXEC); fd >= 0; fd = open("/dev/null", O_RDWR | O_CLOEXEC)) {
    if (fd > 2) {
      close(fd);
      break;
    }
    fcntl(fd, F_SETFD, 0);  // it stands in for stdin/stdout/stderr: keep it across exec
  }
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
  if (options.make_host_key) {
    auto ready = pgod::supervisor::ensure_host_key(options.host_key);
    if (!ready) {
      fmt::print(stderr, "pgod: the host key: {}\n", ready.error());
      return 1;
    }
    fmt::print("{} {} ({})\n", options.host_key, ready->created ? "created" : "exists", ready->fingerprint);
    return 0;
  }
  if (options.status) return pgod::supervisor::print_status(options.rundir + "/supervisor.sock");
  if (!options.restart_worker.empty())
    return pgod::supervisor::request_worker_restart(options.rundir + "/supervisor.sock", options.restart_worker);

  int code = 1;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { code = serve(options); })) {
    spdlog::critical("{}", exception->getDescription().cStr());
    return 1;
  }
  return code;
}
