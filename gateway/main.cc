// pgod-gateway: the unprivileged SSH front door. Start-up is the whole privileged part, in
// order: open (or inherit) the listeners, load the host key, drop root, install the seccomp
// allowlist. Only then is a byte read from the network.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <kj/async-unix.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>

#include "backends.h"
#include "confinement.h"
#include "duration.h"
#include "flags.h"
#include "gateway_limits.h"
#include "key_index.h"
#include "listen_address.h"
#include "logging.h"
#include "metrics.h"
#include "ssh_server.h"
#include "unique_fd.h"

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer's check at exit forks a tracer and uses ptrace, which the allowlist forbids;
// leaks are checked where the gateway's parts run unconfined (the unit tests).
extern "C" int __lsan_is_turned_off() { return 1; }
#endif

namespace {

constexpr std::size_t kMaxHostKeyBytes = 64 * 1024;
// How often the service list is asked of the supervisor (keys are pushed, not polled).
constexpr auto kServicePollInterval = 2 * kj::SECONDS;

struct SshBindFree {
  void operator()(ssh_bind bind) const { ssh_bind_free(bind); }
};
using OwnedBind = std::unique_ptr<std::remove_pointer_t<ssh_bind>, SshBindFree>;

std::optional<int> parse_fd(const std::string& text) {
  int fd = -1;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), fd);
  if (error != std::errc() || end != text.data() + text.size() || fd < 3) return std::nullopt;
  return fd;
}

// An inherited listening socket (--ssh-fd), or one bound here (-s).
pgod::Expected<pgod::UniqueFd, std::string> open_listener(const std::string& inherited, const std::string& address,
                                                          const std::string& flag) {
  if (!inherited.empty()) {
    auto fd = parse_fd(inherited);
    int listening = 0;
    socklen_t length = sizeof listening;
    if (!fd || getsockopt(*fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || !listening)
      return pgod::Unexpected{fmt::format("{} {}: not a listening socket", flag, inherited)};
    return pgod::UniqueFd(*fd);
  }
  auto parsed = pgod::parse_listen_address(address);
  if (!parsed) return pgod::Unexpected{parsed.error()};
  return pgod::bind_listen_address(*parsed, flag);
}

// The host key's text, from the fd pgod passes (pgod reads the root-only file) or the file.
pgod::Expected<std::string, std::string> read_host_key(const std::string& fd_text, const std::string& path) {
  pgod::UniqueFd fd;
  std::string where;
  if (!fd_text.empty()) {
    auto number = parse_fd(fd_text);
    if (!number) return pgod::Unexpected{fmt::format("--host-key-fd {}: not a file descriptor", fd_text)};
    fd.reset(*number);
    where = "--host-key-fd " + fd_text;
    if (lseek(fd.get(), 0, SEEK_SET) != 0 && errno != ESPIPE)
      return pgod::Unexpected{fmt::format("{}: {}", where, std::strerror(errno))};
  } else {
    fd.reset(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    where = path;
    if (!fd)
      return pgod::Unexpected{fmt::format("{}: {} (create it with: ssh-keygen -q -t ed25519 -N '' -f {})", path,
                                          std::strerror(errno), path)};
    struct stat info {};
    if (fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode))
      return pgod::Unexpected{fmt::format("{}: not a regular file", path)};
    if ((info.st_mode & 077) != 0 && info.st_uid == geteuid() && geteuid() == 0)
      return pgod::Unexpected{
          fmt::format("{}: readable by others (mode {:o}); chmod 600 {}", path, info.st_mode & 0777, path)};
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = read(fd.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return pgod::Unexpected{fmt::format("reading {}: {}", where, std::strerror(errno))};
    if (got == 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > kMaxHostKeyBytes) return pgod::Unexpected{fmt::format("{}: too large for a key", where)};
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  std::string ssh_address = ":2222";
  std::string metrics_address = ":9112";
  std::string host_key = "/etc/pgo/ssh_host_ed25519_key";
  std::string host_key_fd;
  std::string rundir = "/run/pgod";
  std::string user = "pgod-gw";
  std::string ssh_fd, metrics_fd;
  pgod::gateway::Limits limits;
  bool debug = false;
  bool help = false;
  bool version = false;
  pgod::FlagSet flags("pgod-gateway");
  flags.add_string('s', "ssh", &ssh_address, "ssh address to listen on", "addr");
  flags.add_string('m', "metrics", &metrics_address, "address for the Prometheus /metrics endpoint", "addr");
  flags.add_string(0, "host-key", &host_key, "the host's private key (ed25519)", "file");
  flags.add_string(0, "host-key-fd", &host_key_fd, "read the host key from this fd instead (pgod passes it)", "fd");
  flags.add_string(0, "ssh-fd", &ssh_fd, "inherited listening socket for SSH (pgod passes it; replaces -s)", "fd");
  flags.add_string(0, "metrics-fd", &metrics_fd, "inherited listening socket for /metrics (replaces -m)", "fd");
  flags.add_string(0, "rundir", &rundir, "directory holding supervisor.sock and workers/", "dir");
  flags.add_string(0, "user", &user, "user to become when started as root", "name");
  pgod::add_gateway_limit_flags(flags, &limits);
  flags.add_bool(0, "debug", &debug, "enable debug logging");
  flags.add_bool('v', "version", &version, "show version and exit");
  flags.add_bool('h', "help", &help, "show this help and exit");
  auto positional = flags.parse({argv + 1, argv + argc});
  if (!positional) {
    fmt::print(stderr, "pgod-gateway: {}\n", positional.error());
    return 1;
  }
  if (help) {
    fmt::print("{}", flags.usage("[OPTION]..."));
    return 0;
  }
  if (version) {
    fmt::print("pgod-gateway {} (libssh {})\n", PGOD_VERSION, ssh_version(0));
    return 0;
  }
  if (!positional->empty()) {
    fmt::print(stderr, "pgod-gateway: unexpected argument \"{}\"\n", positional->front());
    return 1;
  }
  pgod::setup_logging("pgod-gateway", debug);
  signal(SIGPIPE, SIG_IGN);

  // Each connection costs two descriptors (libssh's and the dup the event loop watches), plus
  // worker links: raise the soft limit to the hard one, and say so if --max-connections still
  // cannot fit, rather than fail accept() under load.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &files) != 0)
      spdlog::warn("cannot raise the open-file limit to {}: {}", files.rlim_max, std::strerror(errno));
  }
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
      files.rlim_cur < 2 * limits.max_connections + 64)
    spdlog::warn("the open-file limit ({}) is below what --max-connections {} needs ({}): raise LimitNOFILE",
                 files.rlim_cur, limits.max_connections, 2 * limits.max_connections + 64);

  // 1. The listeners.
  auto ssh_listener = open_listener(ssh_fd, ssh_address, "-s/--ssh");
  if (!ssh_listener) {
    spdlog::critical("{}", ssh_listener.error());
    return 1;
  }
  auto metrics_listener = open_listener(metrics_fd, metrics_address, "-m/--metrics");
  if (!metrics_listener) {
    spdlog::critical("{}", metrics_listener.error());
    return 1;
  }
  for (int fd : {ssh_listener->get(), metrics_listener->get()}) {
    const int status = fcntl(fd, F_GETFL);
    if (status < 0 || fcntl(fd, F_SETFL, status | O_NONBLOCK) != 0) {
      spdlog::critical("cannot make the listening socket non-blocking: {}", std::strerror(errno));
      return 1;
    }
  }

  // 2. The host key (crypto set up now: its library may read files at initialisation).
  if (ssh_init() != SSH_OK) {
    spdlog::critical("cannot initialise libssh");
    return 1;
  }
  auto key_text = read_host_key(host_key_fd, host_key);
  if (!key_text) {
    spdlog::critical("the host key: {}", key_text.error());
    return 1;
  }
  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_base64(key_text->c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK) {
    spdlog::critical("the host key ({}): not a private key libssh can read (a passphrase is not supported)",
                     host_key_fd.empty() ? host_key : "--host-key-fd");
    return 1;
  }
  std::fill(key_text->begin(), key_text->end(), '\0');
  OwnedBind bind(ssh_bind_new());
  bool process_config = false;  // never read libssh's server config file: every setting is here
  if (!bind || ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK) {
    spdlog::critical("cannot set up the SSH server: {}", bind ? ssh_get_error(bind.get()) : "out of memory");
    return 1;
  }
  utsname names{};
  if (uname(&names) != 0) {
    spdlog::critical("uname: {}", std::strerror(errno));
    return 1;
  }
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  auto io = kj::setupAsyncIo();

  // 3. Drop root, 4. the allowlist: from here on no exec, no fork, no file, no new network socket.
  if (auto dropped = pgod::gateway::drop_root(user); !dropped) {
    spdlog::critical("cannot become {}: {}", user, dropped.error());
    return 1;
  }
  if (auto confined = pgod::gateway::install_gateway_filter(); !confined) {
    spdlog::critical("cannot install the seccomp allowlist: {}", confined.error());
    return 1;
  }
  spdlog::info("ready: ssh on {}, metrics on {}, uid {}, confined",
               pgod::gateway::socket_address(ssh_listener->get(), false),
               pgod::gateway::socket_address(metrics_listener->get(), false), getuid());

  pgod::gateway::KeyIndex keys;
  pgod::gateway::Metrics metrics;
  pgod::gateway::Backends backends(io, rundir, keys);
  pgod::gateway::SshServer server(io, bind.get(), ssh_listener->get(), backends, keys, metrics, limits, names.nodename);
  auto metrics_receiver =
      io.lowLevelProvider->wrapListenSocketFd(metrics_listener->release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto serving = server.run()
                     .exclusiveJoin(backends.run(kServicePollInterval))
                     .exclusiveJoin(pgod::gateway::serve_metrics(*metrics_receiver, io.provider->getTimer(), metrics,
                                                                 [&backends]() { return backends.snapshot(); }))
                     .exclusiveJoin(io.unixEventPort.onSignal(SIGTERM).ignoreResult())
                     .exclusiveJoin(io.unixEventPort.onSignal(SIGINT).ignoreResult());
  serving.wait(io.waitScope);
  spdlog::info("stopping");
  return 0;
}
