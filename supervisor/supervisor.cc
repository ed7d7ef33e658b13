#include "supervisor.h"

#include <capnp/serialize.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "dockergate.capnp.h"
#include "fs_ops.h"
#include "host_key.h"
#include "logging.h"
#include "service_name.h"
#include "sockets.h"
#include "system_call.h"

namespace pgod::supervisor {
namespace {

using namespace std::chrono_literals;

constexpr auto kFirstBackoff = 1s;
constexpr auto kMaxBackoff = 60s;
// A worker that ran this long was healthy: its next crash starts the backoff from the bottom.
constexpr auto kStablePeriod = 60s;
constexpr auto kStopGrace = 10s;
constexpr auto kMountTimeout = 60s;
constexpr auto kRetireTimeout = 15min;  // the worker's own `down` timeout is 10 minutes
constexpr const char* kGatewayName = "pgod-gateway";
constexpr const char* kDockerGateName = "pgod-dockergate";

std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }

// Where a service's bind sources may be: its checkout and its data directory.
std::vector<std::string> bind_roots_of(const Layout& layout, const std::string& name) {
  std::vector<std::string> roots = {layout.checkout(name)};
  if (!layout.datadir.empty()) roots.push_back(layout.data(name));
  return roots;
}

std::string nfs_source(const std::string& url) {
  // nfs://host/path → host:/path (validated by the config check).
  const auto rest = url.substr(std::string_view("nfs://").size());
  const auto slash = rest.find('/');
  return rest.substr(0, slash) + ":" + rest.substr(slash);
}

}  // namespace

struct Supervisor::Supervised {
  std::string name;
  bool is_gateway = false;     // the SSH gateway, or
  bool is_dockergate = false;  // the docker gate; neither: a service's worker
  config::Service service;     // workers: the config it runs with
  Identity identity;
  kj::Array<capnp::word> settings;  // workers: the message it was given
  UniqueFd listen_fd;               // workers: the socket pgod bound
  std::shared_ptr<spdlog::logger> log;

  WorkerView::State state = WorkerView::State::kStopped;
  pid_t pid = 0;
  kj::Maybe<pid_t> reap;              // nulled by KJ once the child is reaped: safe to kill() while set
  kj::Promise<void> watch = nullptr;  // the exit watch, the restart timer or the mount
  std::chrono::steady_clock::time_point started{};
  std::chrono::seconds backoff = kFirstBackoff;
  unsigned restarts = 0;
  std::string last_exit;
  bool killed = false;  // its last exit was a SIGKILL: someone else's doing, not a failing start
  std::string mount_error;
  kj::Own<kj::PromiseFulfiller<void>> stopped;  // set while a stop waits for the exit
  kj::Maybe<kj::ForkedPromise<void>> stopping;  // every caller of stop() waits for the same exit
};

const char* Supervisor::kind_of(const Supervised& child) {
  return child.is_dockergate ? "docker gate" : child.is_gateway ? "gateway" : "worker";
}

Supervisor::Supervisor(kj::AsyncIoContext& io, SupervisorSettings settings, SeccompProgram worker_filter)
    : io_(io), settings_(std::move(settings)), worker_filter_(std::move(worker_filter)), tasks_(*this) {}

Supervisor::~Supervisor() = default;

void Supervisor::taskFailed(kj::Exception&& exception) {
  spdlog::error("internal error: {}", exception.getDescription().cStr());
}

// ---- start and apply ----------------------------------------------------------------------

std::optional<std::string> Supervisor::start(config::Config config) {
  const auto& layout = settings_.layout;
  const gid_t socket_group = settings_.gateway ? settings_.gateway->gid : 0;
  // The checkouts' parent is root's; each service's directory below it is its user's.
  for (const auto& [path, gid, mode] :
       {std::tuple{layout.dir, gid_t{0}, mode_t{0755}}, std::tuple{layout.state_root(), gid_t{0}, mode_t{0711}},
        std::tuple{layout.rundir, gid_t{0}, mode_t{0755}},
        std::tuple{layout.workers_dir(), socket_group, mode_t{0750}}}) {
    auto made = ensure_directory(path, 0, gid, mode);
    if (!made) return made.error();
  }
  if (!layout.datadir.empty())
    if (auto made = ensure_directory(layout.datadir, 0, 0, 0755); !made) return made.error();
  // Each user may reach its own socket in there, and list nothing.
  if (settings_.defaults.docker_gate)
    if (auto made = ensure_directory(layout.docker_dir(), 0, 0, 0711); !made) return made.error();

  apply(std::move(config));

  if (!settings_.gateway_program.empty()) {
    gateway_ = std::make_unique<Supervised>();
    gateway_->name = kGatewayName;
    gateway_->is_gateway = true;
    gateway_->identity = *settings_.gateway;
    gateway_->log = service_logger(kGatewayName);
    launch(*gateway_);
  }
  if (settings_.dockergate_handover_fd >= 0)
    handover_ = kj::heap<DockerGateHandover>(io_, settings_.dockergate_handover_fd, settings_.dockergate->uid,
                                             [this]() { return gate_offer(0); });
  if (!settings_.dockergate_program.empty()) {
    dockergate_ = std::make_unique<Supervised>();
    dockergate_->name = kDockerGateName;
    dockergate_->is_dockergate = true;
    dockergate_->identity = *settings_.dockergate;
    dockergate_->log = service_logger(kDockerGateName);
    launch(*dockergate_);
  }
  return std::nullopt;
}

void Supervisor::apply(config::Config config) {
  config_ = std::move(config);
  const auto caddy = caddy_import(config_);
  not_started_.clear();
  stop_removed_services();
  // Directories no service names: left by an earlier run, or whose removal failed before.
  remove_stale_services();
  for (const auto& service : config_.services) {
    if (retiring_.count(service.name) != 0) continue;  // started again once the removal is done
    apply_service(service, caddy);
  }
  refresh_dockergate();
}

// Deleted services: stop the worker, then bring the project down and remove its directories.
void Supervisor::stop_removed_services() {
  std::set<std::string> wanted;
  for (const auto& service : config_.services) wanted.insert(service.name);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (wanted.count(it->first) != 0 || retiring_.count(it->first) != 0) {
      ++it;
      continue;
    }
    const std::string name = it->first;
    it->second->log->info("removed from the config: stopping the worker");
    retiring_.insert(name);
    auto* child = it->second.get();
    tasks_.add(stop(*child).then([this, name]() {
      workers_.erase(name);
      retire(name);
    }));
    ++it;
  }
}

// One service of the config: a new one is started, a running one restarted when its settings
// changed, and left running otherwise. A service whose user does not exist is not started.
void Supervisor::apply_service(const config::Service& service, const std::string& caddy) {
  auto log = service_logger(service.name);
  std::string note;
  auto identity = lookup_user(service.user, false, &note);
  if (!identity) {
    log->error("{}: the worker is not started", identity.error());
    not_started_[service.name] = identity.error();
    return;
  }
  if (!note.empty()) log->warn("{}", note);
  if (!settings_.change_identity) identity->groups.clear();
  auto settings = worker_settings(service, *identity, settings_.layout, settings_.defaults, caddy);
  if (auto existing = workers_.find(service.name); existing != workers_.end())
    restart_if_changed(*existing->second, service, *identity, kj::mv(settings), log);
  else
    start_worker(service, *identity, kj::mv(settings), log);
}

void Supervisor::restart_if_changed(Supervised& child, const config::Service& service, const Identity& identity,
                                    kj::Array<capnp::word> settings, const std::shared_ptr<spdlog::logger>& log) {
  if (child.settings.asBytes() == settings.asBytes()) return;  // unchanged: keeps running
  log->info("settings changed: restarting the worker");
  child.service = service;
  child.identity = identity;
  child.settings = kj::mv(settings);
  child.backoff = kFirstBackoff;
  // Stopped before its directories are prepared: a user change must not hand the tree over
  // while the old user's worker still writes in it.
  tasks_.add(stop(child).then([this, &child]() {
    // Removed by a later reload while it stopped: the removal owns it now.
    if (shutting_down_ || retiring_.count(child.name) != 0) return;
    auto problem = prepare_service(child.service, child.identity);
    if (!problem)
      problem = open_gate_socket(child.name, child.identity.uid, bind_roots_of(settings_.layout, child.name),
                                 child.service.networks);
    refresh_dockergate();
    if (problem) {
      child.log->error("{}: the worker is not started", *problem);
      child.last_exit = *problem;
      return;
    }
    launch(child);
  }));
}

// A service new to pgod: its directories, its socket (bound by pgod, kept across worker
// restarts), then its worker.
void Supervisor::start_worker(const config::Service& service, const Identity& identity, kj::Array<capnp::word> settings,
                              const std::shared_ptr<spdlog::logger>& log) {
  if (auto problem = prepare_service(service, identity)) {
    log->error("{}: the worker is not started", *problem);
    not_started_[service.name] = *problem;
    return;
  }
  const gid_t socket_group = settings_.gateway ? settings_.gateway->gid : 0;
  auto socket = bind_unix_socket(settings_.layout.worker_socket(service.name), socket_group);
  if (!socket) {
    log->error("{}: the worker is not started", socket.error());
    not_started_[service.name] = socket.error();
    return;
  }
  if (auto problem = open_gate_socket(service.name, identity.uid, bind_roots_of(settings_.layout, service.name),
                                      service.networks)) {
    log->error("{}: the worker is not started", *problem);
    not_started_[service.name] = *problem;
    return;
  }
  auto child = std::make_unique<Supervised>();
  child->name = service.name;
  child->service = service;
  child->identity = identity;
  child->settings = kj::mv(settings);
  child->listen_fd = std::move(*socket);
  child->log = log;
  auto& ref = *child;
  workers_.emplace(service.name, std::move(child));
  launch(ref);
}

std::optional<std::string> Supervisor::prepare_service(const config::Service& service, const Identity& identity) {
  const auto& layout = settings_.layout;
  const auto checkout = layout.checkout(service.name);
  const auto state = layout.state(service.name);
  // Who ran the service before is told by its state directory, which no container can reach
  // (a container may bind the checkout and chown it).
  struct stat before {};
  const bool existed = lstat(state.c_str(), &before) == 0 && S_ISDIR(before.st_mode);
  // Not readable by other users: the checkout may hold .env files and the Caddy import. Behind
  // the docker gate, the gate's group may pass through it (0710) to resolve bind sources; it can
  // list and read nothing there.
  const auto [top_gid, top_mode] = service_top_access(identity);
  if (auto made = ensure_directory(checkout, identity.uid, top_gid, top_mode); !made) return made.error();
  if (existed && (before.st_uid != identity.uid || before.st_gid != identity.gid)) {
    // The service's user changed (its worker is stopped by now): the new user must own the
    // whole checkout and state to carry on; the old user's docker config (where a plugin could
    // have been planted) is dropped, the worker makes a fresh one.
    spdlog::info("[{}] was run by uid {}: giving {} and {} to {}", service.name, before.st_uid, checkout, state,
                 identity.user);
    if (auto removed = remove_tree(state, "docker"); !removed) return removed.error();
    for (const auto& tree : {checkout, state})
      if (auto chowned = chown_tree(tree, identity.uid, identity.gid); !chowned) return chowned.error();
    if (auto made = ensure_directory(checkout, identity.uid, top_gid, top_mode); !made) return made.error();
  }
  // Last: until the state directory is the new user's, a failed hand-over is tried again.
  if (auto made = ensure_directory(state, identity.uid, identity.gid, 0700); !made) return made.error();
  if (!layout.datadir.empty()) {
    const auto data = layout.data(service.name);
    auto mounted = is_mount_point(data);
    if (!mounted) return mounted.error();  // unsure what is there: touch nothing
    // A mounted share's root belongs to the NFS server's idea of ownership: leave it alone.
    if (!*mounted)
      if (auto made_data = ensure_directory(data, identity.uid, top_gid, top_mode); !made_data)
        return made_data.error();
  }
  return std::nullopt;
}

// ---- one supervised process ---------------------------------------------------------------

void Supervisor::launch(Supervised& child) {
  // Running already (two restarts raced): one process per service, and its watch stays.
  if (shutting_down_ || child.pid != 0) return;
  // Only ever assigned from outside the chain it replaces: a continuation must not destroy the
  // promise that is running it.
  child.watch = supervise(child).eagerlyEvaluate([this](kj::Exception&& e) { taskFailed(kj::mv(e)); });
}

kj::Promise<void> Supervisor::supervise(Supervised& child) {
  return run_once(child).then([this, &child](bool stopped) -> kj::Promise<void> {
    if (stopped || shutting_down_) {
      child.state = WorkerView::State::kStopped;
      return kj::READY_NOW;
    }
    const auto ran = now() - child.started;
    if (ran >= kStablePeriod) child.backoff = kFirstBackoff;
    // Restarts are spaced from the last start: a worker that was up for a while comes back at
    // once, one that dies at start-up is retried after 1 s, 2 s, 4 s, … up to a minute. A
    // SIGKILL is never the worker's own failure (its faults are SIGSEGV/SIGABRT/SIGSYS or an
    // exit code) but an admin or the OOM killer: it comes back at once and the backoff stays.
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(std::chrono::steady_clock::duration::zero(), child.backoff - ran));
    if (child.killed)
      delay = std::chrono::milliseconds::zero();
    else
      child.backoff = std::min(child.backoff * 2, std::chrono::seconds(kMaxBackoff));
    child.state = WorkerView::State::kBackingOff;
    child.log->warn("{} {}: restarting in {:.1f} s", kind_of(child),
                    child.last_exit.empty() ? "did not start" : child.last_exit, delay.count() / 1000.0);
    return io_.provider->getTimer().afterDelay(delay.count() * kj::MILLISECONDS).then([this, &child]() {
      return supervise(child);
    });
  });
}

kj::Promise<bool> Supervisor::run_once(Supervised& child) {
  kj::Promise<bool> ready = true;
  if (!child.is_gateway && !child.service.mount.empty()) ready = ensure_mounted(child.service);
  return ready.then([this, &child](bool mounted) -> kj::Promise<bool> {
    child.started = now();
    child.killed = false;  // a start that fails is a failure of its own, whatever ended the last run
    if (!mounted || !spawn(child)) return false;
    child.mount_error.clear();
    return io_.unixEventPort.onChildExit(child.reap).then([&child](int status) {
      child.pid = 0;
      child.last_exit = describe_exit(status);
      child.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      if (child.stopped) {
        child.log->info("{} stopped ({})", kind_of(child), child.last_exit);
        child.stopped->fulfill();
        child.stopped = nullptr;
        return true;
      }
      ++child.restarts;
      return false;
    });
  });
}

SpawnSpec Supervisor::child_spec(const Identity& identity) const {
  return worker_spawn_spec(identity, worker_filter_, settings_.change_identity);
}

bool Supervisor::spawn(Supervised& child) {
  SpawnSpec spec = child_spec(child.identity);
  UniqueFd settings_fd;
  if (child.is_dockergate) {
    if (!spawn_dockergate(child, spec, settings_fd)) return false;
  } else if (child.is_gateway) {
    spec.program = settings_.gateway_program;
    spec.seccomp = nullptr;  // the gateway installs its own, stricter, after loading its key
    // The key is read now, so a replaced key takes effect at the gateway's next start.
    auto key = read_host_key(settings_.gateway_host_key);
    if (!key) {
      child.log->error("the host key: {}", key.error());
      child.last_exit = key.error();
      return false;
    }
    auto memfd = sealed_memfd("host-key", kj::arrayPtr(reinterpret_cast<const kj::byte*>(key->data()), key->size()));
    wipe(*key);
    if (!memfd) {
      child.log->error("{}", memfd.error());
      child.last_exit = memfd.error();
      return false;
    }
    settings_fd = std::move(*memfd);
    spec.argv = {spec.program, "--ssh-fd", "3", "--metrics-fd", "4", "--hooks-fd", "5", "--host-key-fd", "6"};
    spec.argv.insert(spec.argv.end(), settings_.gateway_args.begin(), settings_.gateway_args.end());
    spec.fds = settings_.gateway_fds;
    spec.fds.push_back(settings_fd.get());
  } else {
    // The settings travel in a sealed memfd: read once by the worker, never a file on disk.
    auto memfd = sealed_memfd(child.name, child.settings.asBytes());
    if (!memfd) {
      child.log->error("{}", memfd.error());
      child.last_exit = memfd.error();
      return false;
    }
    settings_fd = std::move(*memfd);
    spec.program = settings_.worker_program;
    spec.argv = {spec.program, "--settings-fd", "3", "--listen-fd", "4"};
    if (!settings_.path_prefix.empty()) spec.argv.insert(spec.argv.end(), {"--path-prefix", settings_.path_prefix});
    spec.fds = {settings_fd.get(), child.listen_fd.get()};
  }
  auto pid = spawn_confined(spec);
  if (!pid) {
    child.log->error("{}", pid.error());
    child.last_exit = pid.error();
    return false;
  }
  child.pid = *pid;
  child.reap = *pid;
  child.state = WorkerView::State::kRunning;
  child.log->info("{} started as {} (pid {})", kind_of(child), child.identity.user, *pid);
  return true;
}

kj::Promise<void> Supervisor::stop(Supervised& child) {
  if (child.pid == 0) {
    child.watch = nullptr;  // a pending restart or mount: cancelled (never called from within it)
    child.state = WorkerView::State::kStopped;
    return kj::READY_NOW;
  }
  KJ_IF_MAYBE (pending, child.stopping) {
    return pending->addBranch();
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  child.stopped = kj::mv(paf.fulfiller);
  KJ_IF_MAYBE (pid, child.reap) {
    if (kill(*pid, SIGTERM) != 0) child.log->warn("kill {} TERM: {}", *pid, errno_text(errno));
  }
  auto escalate = io_.provider->getTimer().afterDelay(kStopGrace.count() * kj::SECONDS).then([&child]() {
    KJ_IF_MAYBE (pid, child.reap) {
      child.log->warn("did not stop within {} s: killing pid {}", kStopGrace.count(), *pid);
      kill(*pid, SIGKILL);
    }
  });
  auto stopping = paf.promise.exclusiveJoin(escalate.then([]() { return kj::Promise<void>(kj::NEVER_DONE); }))
                      .then([&child]() { child.stopping = nullptr; })
                      .fork();
  auto waiting = stopping.addBranch();
  child.stopping = kj::mv(stopping);
  return waiting;
}

kj::Promise<void> Supervisor::shutdown() {
  shutting_down_ = true;
  kj::Vector<kj::Promise<void>> stopping;
  if (gateway_) stopping.add(stop(*gateway_));
  if (dockergate_) stopping.add(stop(*dockergate_));
  for (auto& [name, child] : workers_) stopping.add(stop(*child));
  return kj::joinPromises(stopping.releaseAsArray());
}

// ---- NFS ----------------------------------------------------------------------------------

kj::Promise<bool> Supervisor::ensure_mounted(const config::Service& service) {
  const auto target = settings_.layout.data(service.name);
  auto log = service_logger(service.name);
  auto mounted = is_mount_point(target);
  if (!mounted) {
    log->error("{}: not mounting", mounted.error());
    return false;
  }
  if (*mounted) return true;
  const auto source = nfs_source(service.mount);
  log->info("mounting {} on {}", source, target);
  auto argv = settings_.mount_command;
  argv.insert(argv.end(), {"-t", "nfs", "-o", "rw,nosuid,nodev,hard", source, target});
  return run_root_program(std::move(argv), kMountTimeout)
      .then([this, log, name = service.name, source, target](int status) {
        auto mounted_now = is_mount_point(target);
        std::string error;
        if (status != 0)
          error = fmt::format("mount {} on {} failed ({})", source, target, describe_exit(status));
        else if (!mounted_now || !*mounted_now)
          error = fmt::format("mount {} on {} reported success but {} is not a mount point", source, target, target);
        auto found = workers_.find(name);
        if (!error.empty()) {
          log->error("{}: the worker waits for the share", error);
          if (found != workers_.end()) found->second->mount_error = error;
          return false;
        }
        log->info("mounted {} on {}", source, target);
        // The docker gate's private root is a copy of the tree when it started: it must see the
        // share (and its symlinks) before it judges binds into it.
        ++shares_mounted_;
        refresh_dockergate();
        return true;
      });
}

kj::Promise<int> Supervisor::run_root_program(std::vector<std::string> argv, std::chrono::seconds timeout) {
  std::vector<char*> pointers;
  for (auto& arg : argv) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* env[] = {path_env, nullptr};
  // pgod's event loop blocks the signals it handles; the program must start with none blocked
  // and default handlers, or it could not be stopped with SIGTERM.
  posix_spawnattr_t attributes;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  pid_t pid = 0;
  int error = posix_spawnattr_init(&attributes);
  if (error == 0) {
    error = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (error == 0) error = posix_spawnattr_setsigmask(&attributes, &none);
    if (error == 0) error = posix_spawnattr_setsigdefault(&attributes, &all);
    if (error == 0) error = posix_spawn(&pid, argv[0].c_str(), nullptr, &attributes, pointers.data(), env);
    posix_spawnattr_destroy(&attributes);
  }
  if (error != 0) {
    spdlog::error("cannot run {}: {}", argv[0], errno_text(error));
    return 127 << 8;
  }
  return wait_child(pid, timeout, argv[0]);
}

kj::Promise<int> Supervisor::wait_child(pid_t pid, std::chrono::seconds timeout, std::string what) {
  struct Running {
    kj::Maybe<pid_t> reap;
    ~Running() {
      // Cancelled (timeout, shutdown): the program must not outlive its purpose. KJ reaps it.
      KJ_IF_MAYBE (pid, reap) {
        kill(*pid, SIGKILL);
      }
    }
  };
  auto running = kj::heap<Running>();
  running->reap = pid;
  auto exited = io_.unixEventPort.onChildExit(running->reap);
  auto timed_out = io_.provider->getTimer().afterDelay(timeout.count() * kj::SECONDS).then([what, timeout]() {
    spdlog::error("{} did not finish within {} s: killed", what, timeout.count());
    return int{SIGKILL};
  });
  return exited.exclusiveJoin(kj::mv(timed_out)).attach(kj::mv(running));
}

// ---- stale services -----------------------------------------------------------------------

void Supervisor::remove_stale_services() {
  std::set<std::string> configured;
  for (const auto& service : config_.services) configured.insert(service.name);
  std::unique_ptr<DIR, int (*)(DIR*)> listing(opendir(settings_.layout.dir.c_str()), closedir);
  if (!listing) {
    spdlog::error("cannot list {} for stale services: {}", settings_.layout.dir, errno_text(errno));
    return;
  }
  std::vector<std::string> stale;
  while (auto* entry = readdir(listing.get())) {
    const std::string name = entry->d_name;
    if (!is_valid_service_name(name) || configured.count(name) != 0 || retiring_.count(name) != 0 ||
        workers_.count(name) != 0)
      continue;
    struct stat info {};
    if (fstatat(dirfd(listing.get()), name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(info.st_mode))
      continue;
    stale.push_back(name);
  }
  for (const auto& name : stale) {
    spdlog::info("[{}] {} is not in the config: bringing it down and removing it", name,
                 settings_.layout.checkout(name));
    retiring_.insert(name);
    retire(name);
  }
}

void Supervisor::retire(const std::string& name) {
  const auto& layout = settings_.layout;
  auto log = service_logger(name);
  struct stat info {};
  if (lstat(layout.checkout(name).c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    finish_retirement(name, true);  // nothing checked out: nothing can run
    return;
  }
  for (const auto& service : config_.services) {
    if (compose_project_name(service.name) == compose_project_name(name)) {
      // a.b and a_b share a compose project: its containers are the live service's now.
      log->warn("its compose project {} belongs to service {}: removing the directory without down",
                compose_project_name(name), service.name);
      finish_retirement(name, true);
      return;
    }
  }
  // Not as the directory's owner: a container that binds the checkout can chown it (to root, or
  // to another service's user). `nobody` with the docker group can bring the project down, and
  // works in a fresh directory of pgod's making, so nothing the old user left (a docker config,
  // a CLI plugin) is used.
  std::string note;
  auto nobody = lookup_user("nobody", false, &note);
  Identity identity = nobody ? *nobody : identity_of_uid(65534, 65534, false);
  if (!settings_.change_identity) identity.groups.clear();
  const std::string work_name = ".retire-" + name;
  const std::string work_dir = layout.state_root() + "/" + work_name;
  if (auto removed = remove_tree(layout.state_root(), work_name); !removed) {
    log->error("{}: cannot bring it down; kept", removed.error());
    finish_retirement(name, false);
    return;
  }
  if (auto made = ensure_directory(work_dir, identity.uid, identity.gid, 0700); !made) {
    log->error("{}: cannot bring it down; kept", made.error());
    finish_retirement(name, false);
    return;
  }
  // Its socket on the docker gate is nobody's while the project is brought down: the retiring
  // worker's, which the gate lets act on that project alone.
  if (auto problem = open_gate_socket(name, identity.uid, {work_dir}, {})) {
    log->error("{}: cannot bring it down; kept", *problem);
    finish_retirement(name, false);
    return;
  }
  refresh_dockergate();
  bring_down_retired(name, identity, 1);
}

// `compose down` of a retired service, by pgod-worker --retire. Another retirement ending, or a
// service added, restarts the docker gate, and a down caught by that restart loses its
// connection: it is tried again, a few seconds later, before the service is kept for the next
// start or reload.
constexpr int kRetireAttempts = 3;
constexpr auto kRetireRetryDelay = 2 * kj::SECONDS;

void Supervisor::bring_down_retired(const std::string& name, const Identity& identity, int attempt) {
  auto log = service_logger(name);
  const std::string work_name = ".retire-" + name;
  const std::string work_dir = settings_.layout.state_root() + "/" + work_name;
  const auto give_up = [this, &name, &work_name]() {
    if (auto removed = remove_tree(settings_.layout.state_root(), work_name); !removed)
      spdlog::error("[{}] {}", name, removed.error());
    finish_retirement(name, false);
  };
  auto settings = retire_settings(name, identity, settings_.layout, settings_.defaults, work_dir);
  auto memfd = sealed_memfd(name, settings.asBytes());
  if (!memfd) {
    log->error("{}: cannot bring it down; kept", memfd.error());
    return give_up();
  }
  SpawnSpec spec = child_spec(identity);
  spec.program = settings_.worker_program;
  spec.argv = {spec.program, "--settings-fd", "3", "--retire"};
  if (!settings_.path_prefix.empty()) spec.argv.insert(spec.argv.end(), {"--path-prefix", settings_.path_prefix});
  spec.fds = {memfd->get()};
  auto pid = spawn_confined(spec);
  if (!pid) {
    log->error("{}: cannot bring it down; kept", pid.error());
    return give_up();
  }
  tasks_.add(
      wait_child(*pid, kRetireTimeout, "compose down of " + name)
          .then([this, name, log, work_name, identity, attempt](int status) -> kj::Promise<void> {
            if (status != 0 && attempt < kRetireAttempts && !shutting_down_) {
              log->warn("compose down failed ({}): trying again ({} of {})", describe_exit(status), attempt + 1,
                        kRetireAttempts);
              return io_.provider->getTimer().afterDelay(kRetireRetryDelay).then([this, name, identity, attempt]() {
                bring_down_retired(name, identity, attempt + 1);
              });
            }
            if (status != 0)
              log->error("compose down failed ({}): kept {}; retried at the next start or reload",
                         describe_exit(status), settings_.layout.checkout(name));
            if (auto removed = remove_tree(settings_.layout.state_root(), work_name); !removed)
              log->error("{}", removed.error());
            finish_retirement(name, status == 0);
            return kj::READY_NOW;
          }));
}

void Supervisor::finish_retirement(const std::string& name, bool downed) {
  const auto& layout = settings_.layout;
  auto log = service_logger(name);
  if (!downed) {
    end_retirement(name);
    return;
  }
  for (const auto& [parent, entry] : {std::pair{layout.dir, name}, std::pair{layout.state_root(), name}}) {
    if (auto removed = remove_tree(parent, entry); !removed) log->error("{}", removed.error());
  }
  const auto socket = layout.worker_socket(name);
  if (unlink(socket.c_str()) != 0 && errno != ENOENT) log->error("{}", os_error("unlink", socket, errno));
  const auto data = layout.data(name);
  auto mounted = data.empty() ? Expected<bool, std::string>(false) : is_mount_point(data);
  if (!mounted) log->error("{}", mounted.error());
  if (!mounted || !*mounted) {
    // The data itself is never deleted: only an empty mount point goes.
    if (!data.empty() && mounted)
      if (auto removed = remove_directory_if_empty(data); !removed) log->error("{}", removed.error());
    log->info("removed");
    end_retirement(name);
    return;
  }
  // The retirement ends once the share is unmounted: a service added back meanwhile must not
  // start on a share that is about to go.
  auto argv = settings_.umount_command;
  argv.push_back(data);
  tasks_.add(run_root_program(std::move(argv), kMountTimeout).then([this, log, data, name](int status) {
    if (status != 0)
      log->error("umount {} failed ({})", data, describe_exit(status));
    else if (auto removed = remove_directory_if_empty(data); !removed)
      log->error("{}", removed.error());
    log->info("removed");
    end_retirement(name);
  }));
}

void Supervisor::end_retirement(const std::string& name) {
  retiring_.erase(name);
  close_gate_socket(name);
  refresh_dockergate();
  // Added back while it was being removed: start it now.
  if (!shutting_down_)
    for (const auto& service : config_.services)
      if (service.name == name) {
        apply(config_);
        break;
      }
}

// ---- the docker gate ---------------------------------------------------------------------

// The group and mode of a service's checkout and data directory: its own and 0700, or the docker
// gate's group with search only (0710) when the gate resolves its bind sources.
std::pair<gid_t, mode_t> Supervisor::service_top_access(const Identity& identity) const {
  if (settings_.defaults.docker_gate && settings_.dockergate && identity.uid != 0)
    return {settings_.dockergate->gid, 0710};
  return {identity.gid, 0700};
}

std::optional<std::string> Supervisor::open_gate_socket(const std::string& name, uid_t owner,
                                                        std::vector<std::string> bind_roots,
                                                        std::vector<std::string> networks) {
  if (!settings_.defaults.docker_gate) return std::nullopt;
  if (owner == 0) {  // a service run as root talks to dockerd as root: no socket on the gate
    close_gate_socket(name);
    return std::nullopt;
  }
  auto existing = gate_sockets_.find(name);
  if (existing == gate_sockets_.end() || existing->second.owner != owner) {
    // A new owner gets a new socket: connections the old owner's processes made die with it.
    auto socket = bind_unix_socket(settings_.layout.docker_socket(name), owner, 0, 0600);
    if (!socket) return "its docker socket: " + socket.error();
    gate_sockets_[name].fd = std::move(*socket);
  }
  auto& entry = gate_sockets_[name];
  entry.owner = owner;
  entry.bind_roots = std::move(bind_roots);
  entry.networks = std::move(networks);
  return std::nullopt;
}

void Supervisor::close_gate_socket(const std::string& name) {
  if (gate_sockets_.erase(name) == 0) return;
  const auto path = settings_.layout.docker_socket(name);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) spdlog::error("[{}] {}", name, os_error("unlink", path, errno));
}

// What the gate is told, as text: equal text, nothing to restart.
std::string Supervisor::describe_gate_sockets() const {
  std::string text = fmt::format("{} shares mounted\n", shares_mounted_);
  for (const auto& [name, entry] : gate_sockets_)
    text += fmt::format("{} {} [{}] [{}]\n", name, entry.owner, fmt::join(entry.bind_roots, " "),
                        fmt::join(entry.networks, " "));
  return text;
}

void Supervisor::refresh_dockergate() {
  if (shutting_down_ || describe_gate_sockets() == dockergate_served_) return;
  if (handover_) {
    spdlog::info("[{}] services changed: the docker gate unit is asked to start again", kDockerGateName);
    handover_->renew();
  }
  if (!dockergate_) return;
  // Not running (starting up, or backing off): its next start reads the new set.
  if (dockergate_->pid == 0) return;
  dockergate_->log->info("services changed: restarting the docker gate");
  tasks_.add(stop(*dockergate_).then([this]() {
    dockergate_->backoff = kFirstBackoff;
    launch(*dockergate_);
  }));
}

// The gate's settings and the sockets they describe; each service's socketFd is
// `first_fd` + its place in `fds` (the fd number a child gets, or the index in a hand-over).
GateOffer Supervisor::gate_offer(int first_fd) {
  capnp::MallocMessageBuilder message;
  auto settings = message.initRoot<rpc::DockerGateSettings>();
  settings.setDockerSocket(settings_.docker_socket);
  settings.setDebug(settings_.defaults.debug);
  auto services = settings.initServices(static_cast<unsigned>(gate_sockets_.size()));
  GateOffer offer;
  unsigned i = 0;
  for (const auto& [name, entry] : gate_sockets_) {
    auto service = services[i++];
    service.setName(name);
    service.setProject(compose_project_name(name));
    auto roots = service.initBindRoots(static_cast<unsigned>(entry.bind_roots.size()));
    for (unsigned k = 0; k < entry.bind_roots.size(); ++k) roots.set(k, entry.bind_roots[k]);
    auto networks = service.initNetworks(static_cast<unsigned>(entry.networks.size()));
    for (unsigned k = 0; k < entry.networks.size(); ++k) networks.set(k, entry.networks[k]);
    service.setSocketFd(first_fd + static_cast<int>(offer.fds.size()));
    offer.fds.push_back(entry.fd.get());
  }
  const auto words = capnp::messageToFlatArray(message);
  offer.settings.assign(reinterpret_cast<const char*>(words.asBytes().begin()), words.asBytes().size());
  dockergate_served_ = describe_gate_sockets();
  return offer;
}

// The gate's argv and fds: its settings on a sealed memfd (fd 3), then each service's socket.
bool Supervisor::spawn_dockergate(Supervised& child, SpawnSpec& spec, UniqueFd& settings_fd) {
  spec.program = settings_.dockergate_program;
  spec.seccomp = nullptr;  // the gate installs its own allowlist once its private root is set up
  GateOffer offer = gate_offer(4);
  auto memfd = sealed_memfd(
      child.name, kj::arrayPtr(reinterpret_cast<const kj::byte*>(offer.settings.data()), offer.settings.size()));
  if (!memfd) {
    child.log->error("{}", memfd.error());
    child.last_exit = memfd.error();
    return false;
  }
  settings_fd = std::move(*memfd);
  spec.argv = {spec.program, "--settings-fd", "3"};
  spec.fds = {settings_fd.get()};
  spec.fds.insert(spec.fds.end(), offer.fds.begin(), offer.fds.end());
  return true;
}

// ---- views --------------------------------------------------------------------------------

std::vector<WorkerView> Supervisor::workers() const {
  std::vector<WorkerView> views;
  for (const auto& [name, child] : workers_)
    views.push_back({name, child->state, child->pid, child->restarts, child->last_exit, child->mount_error});
  for (const auto& [name, why] : not_started_) views.push_back({name, WorkerView::State::kStopped, 0, 0, why, ""});
  return views;
}

bool Supervisor::restart_worker(const std::string& name) {
  auto found = workers_.find(name);
  if (found == workers_.end() || shutting_down_ || retiring_.count(name) != 0) return false;
  auto& child = *found->second;
  child.log->info("restart requested");
  child.backoff = kFirstBackoff;
  ++child.restarts;
  tasks_.add(stop(child).then([this, &child]() {
    if (retiring_.count(child.name) == 0) launch(child);  // not if removed meanwhile
  }));
  return true;
}

std::optional<HookSettings> Supervisor::hook_settings(const std::string& name) const {
  if (retiring_.count(name) != 0) return std::nullopt;
  for (const auto& service : config_.services)
    if (service.name == name && !service.hook_secret.empty()) return HookSettings{service.hook_secret, service.branch};
  return std::nullopt;
}

std::string Supervisor::summary() const {
  std::size_t running = 0;
  for (const auto& [name, child] : workers_) running += child->state == WorkerView::State::kRunning;
  return fmt::format("{} service{}, {} worker{} running", config_.services.size(),
                     config_.services.size() == 1 ? "" : "s", running, running == 1 ? "" : "s");
}

}  // namespace pgod::supervisor
