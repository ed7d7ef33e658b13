// pgod-gateway: the unprivileged SSH front door. main() is its lifecycle, in order: read the
// flags, set up logging, raise the open-file limit, open (or inherit) the listeners, load the
// host key into the SSH server, start the event loop, drop root, install the seccomp allowlist,
// serve. Everything that needs root or a file happens before the drop; only after the allowlist
// is a byte read from the network.
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <kj/async-unix.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <memory>
#include <optional>

#include "backends.h"
#include "confinement.h"
#include "flags.h"
#include "gateway_limits.h"
#include "hook_request.h"
#include "hooks.h"
#include "key_index.h"
#include "listen_address.h"
#include "logging.h"
#include "metrics.h"
#include "ssh_server.h"
#include "system_call.h"
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

// What the command line sets.
struct Options {
  std::string ssh_address = ":2222";
  std::string metrics_address = ":9112";
  std::string hooks_address = "127.0.0.1:9113";
  std::string host_key = "/etc/pgo/ssh_host_ed25519_key";
  std::string host_key_fd;
  std::string rundir = "/run/pgod";
  std::string user = "pgod-gw";
  std::string ssh_fd, metrics_fd, hooks_fd;
  pgod::gateway::Limits limits;
  bool debug = false;
};

struct Listeners {
  pgod::UniqueFd ssh;
  pgod::UniqueFd metrics;
  pgod::UniqueFd hooks;
};

struct SshBindFree {
  void operator()(ssh_bind bind) const { ssh_bind_free(bind); }
};
using OwnedBind = std::unique_ptr<std::remove_pointer_t<ssh_bind>, SshBindFree>;

// Logs why start-up failed; the exit status.
int fail(const std::string& why) {
  spdlog::critical("{}", why);
  return 1;
}

// The options, or the exit status when there is nothing to serve: 0 after --help or --version,
// 1 after a usage error (printed here: logging is not set up yet).
pgod::Expected<Options, int> parse_flags(int argc, char** argv) {
  Options options;
  bool help = false;
  bool version = false;
  pgod::FlagSet flags("pgod-gateway");
  flags.add_string('s', "ssh", &options.ssh_address, "ssh address to listen on", "addr");
  flags.add_string('m', "metrics", &options.metrics_address, "address for the Prometheus /metrics endpoint", "addr");
  flags.add_string(0, "host-key", &options.host_key, "the host's private key (ed25519)", "file");
  flags.add_string(0, "host-key-fd", &options.host_key_fd, "read the host key from this fd instead (pgod passes it)",
                   "fd");
  flags.add_string(0, "ssh-fd", &options.ssh_fd, "inherited listening socket for SSH (pgod passes it; replaces -s)",
                   "fd");
  flags.add_string(0, "metrics-fd", &options.metrics_fd, "inherited listening socket for /metrics (replaces -m)", "fd");
  flags.add_string(0, "hooks", &options.hooks_address, "address for push hooks, POST /hooks/<service>", "addr");
  flags.add_string(0, "hooks-fd", &options.hooks_fd, "inherited listening socket for push hooks (replaces --hooks)",
                   "fd");
  flags.add_string(0, "rundir", &options.rundir, "directory holding supervisor.sock and workers/", "dir");
  flags.add_string(0, "user", &options.user, "user to become when started as root", "name");
  pgod::add_gateway_limit_flags(flags, &options.limits);
  flags.add_bool(0, "debug", &options.debug, "enable debug logging");
  flags.add_bool('v', "version", &version, "show version and exit");
  flags.add_bool('h', "help", &help, "show this help and exit");
  auto positional = flags.parse({argv + 1, argv + argc});
  if (!positional) {
    fmt::print(stderr, "pgod-gateway: {}\n", positional.error());
    return pgod::Unexpected{1};
  }
  if (help) {
    fmt::print("{}\nKey exchange (as this libssh has them): {}\nHost key: ssh-ed25519 only\n",
               flags.usage("[OPTION]..."), fmt::join(pgod::gateway::key_exchanges(), ", "));
    return pgod::Unexpected{0};
  }
  if (version) {
    fmt::print("pgod-gateway {} (libssh {})\n", PGOD_VERSION, ssh_version(0));
    return pgod::Unexpected{0};
  }
  if (!positional->empty()) {
    fmt::print(stderr, "pgod-gateway: unexpected argument \"{}\"\n", positional->front());
    return pgod::Unexpected{1};
  }
  if (auto wrong = pgod::check_gateway_limits(options.limits); !wrong.empty()) {
    fmt::print(stderr, "pgod-gateway: {}\n", wrong);
    return pgod::Unexpected{1};
  }
  return options;
}

// Each connection costs two descriptors (libssh's and the dup the event loop watches), plus
// worker links: raise the soft limit to the hard one, and say so if --max-connections still
// cannot fit, rather than fail accept() under load.
void raise_fd_limit(std::size_t max_connections) {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &files) != 0)
      spdlog::warn("cannot raise the open-file limit to {}: {}", files.rlim_max, pgod::errno_text(errno));
  }
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
      files.rlim_cur < 2 * max_connections + 64)
    spdlog::warn("the open-file limit ({}) is below what --max-connections {} needs ({}): raise LimitNOFILE",
                 files.rlim_cur, max_connections, 2 * max_connections + 64);
}

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

pgod::Expected<pgod::Done, std::string> make_non_blocking(int fd) {
  const int status = fcntl(fd, F_GETFL);
  if (status < 0 || fcntl(fd, F_SETFL, status | O_NONBLOCK) != 0)
    return pgod::Unexpected{pgod::os_error("cannot make the listening socket non-blocking", "", errno)};
  return pgod::Done{};
}

// The SSH, /metrics and push hook listeners, non-blocking. Before the drop (a port below 1024 needs root)
// and the allowlist (which forbids new network sockets).
pgod::Expected<Listeners, std::string> open_listeners(const Options& options) {
  auto ssh = open_listener(options.ssh_fd, options.ssh_address, "-s/--ssh");
  if (!ssh) return pgod::Unexpected{ssh.error()};
  auto metrics = open_listener(options.metrics_fd, options.metrics_address, "-m/--metrics");
  if (!metrics) return pgod::Unexpected{metrics.error()};
  auto hooks = open_listener(options.hooks_fd, options.hooks_address, "--hooks");
  if (!hooks) return pgod::Unexpected{hooks.error()};
  for (int fd : {ssh->get(), metrics->get(), hooks->get()}) {
    if (auto made = make_non_blocking(fd); !made) return pgod::Unexpected{made.error()};
  }
  return Listeners{std::move(*ssh), std::move(*metrics), std::move(*hooks)};
}

// The host key file, open and checked: a regular file and, when the gateway runs as root and
// owns it, not readable by others.
pgod::Expected<pgod::UniqueFd, std::string> open_host_key_file(const std::string& path) {
  pgod::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd)
    return pgod::Unexpected{fmt::format("{} (create it with: ssh-keygen -q -t ed25519 -N '' -f {})",
                                        pgod::os_error(path, "", errno), path)};
  struct stat info {};
  if (fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode))
    return pgod::Unexpected{fmt::format("{}: not a regular file", path)};
  if ((info.st_mode & 077) != 0 && info.st_uid == geteuid() && geteuid() == 0)
    return pgod::Unexpected{
        fmt::format("{}: readable by others (mode {:o}); chmod 600 {}", path, info.st_mode & 0777, path)};
  return fd;
}

// The host key's text, from the fd pgod passes (pgod reads the root-only file) or the file.
pgod::Expected<std::string, std::string> read_host_key(const std::string& fd_text, const std::string& path) {
  if (fd_text.empty()) {
    auto fd = open_host_key_file(path);
    if (!fd) return pgod::Unexpected{fd.error()};
    return pgod::read_bounded(fd->get(), kMaxHostKeyBytes, path);
  }
  auto number = parse_fd(fd_text);
  if (!number) return pgod::Unexpected{fmt::format("--host-key-fd {}: not a file descriptor", fd_text)};
  const pgod::UniqueFd fd(*number);
  // From the start, should it have been read before; a pipe cannot seek, and needs not.
  if (lseek(fd.get(), 0, SEEK_SET) != 0 && errno != ESPIPE)
    return pgod::Unexpected{pgod::os_error("--host-key-fd", fd_text, errno)};
  return pgod::read_bounded(fd.get(), kMaxHostKeyBytes, "--host-key-fd " + fd_text);
}

// The SSH server's settings with the host key in it; the key's text is wiped once imported.
// libssh (and its crypto library, which may read files) is initialised here, before the drop.
pgod::Expected<OwnedBind, std::string> load_host_key(const Options& options) {
  if (ssh_init() != SSH_OK) return pgod::Unexpected{std::string("cannot initialise libssh")};
  auto key_text = read_host_key(options.host_key_fd, options.host_key);
  if (!key_text) return pgod::Unexpected{"the host key: " + key_text.error()};
  ssh_key key = nullptr;
  const int imported = ssh_pki_import_privkey_base64(key_text->c_str(), nullptr, nullptr, nullptr, &key);
  pgod::wipe(*key_text);
  if (imported != SSH_OK)
    return pgod::Unexpected{
        fmt::format("the host key ({}): not a private key libssh can read (a passphrase is not supported)",
                    options.host_key_fd.empty() ? options.host_key : "--host-key-fd")};
  if (ssh_key_type(key) != SSH_KEYTYPE_ED25519) {
    const std::string type = ssh_key_type_to_char(ssh_key_type(key)) ? ssh_key_type_to_char(ssh_key_type(key)) : "?";
    ssh_key_free(key);
    return pgod::Unexpected{
        fmt::format("the host key ({}) is {}: the gateway serves only ed25519 host keys (create "
                    "one with: ssh-keygen -q -t ed25519 -N '' -f FILE)",
                    options.host_key_fd.empty() ? options.host_key : "--host-key-fd", type)};
  }
  const auto key_exchanges = pgod::gateway::key_exchanges();
  if (key_exchanges.empty()) {
    ssh_key_free(key);
    return pgod::Unexpected{std::string("this libssh has none of the key exchanges the gateway offers (curve25519)")};
  }
  const std::string kex_list = fmt::format("{}", fmt::join(key_exchanges, ","));
  OwnedBind bind(ssh_bind_new());
  bool process_config = false;  // never read libssh's server config file: every setting is here
  if (!bind || ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_KEY_EXCHANGE, kex_list.c_str()) != SSH_OK ||
      ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS, "ssh-ed25519") != SSH_OK) {
    ssh_key_free(key);
    return pgod::Unexpected{
        fmt::format("cannot set up the SSH server: {}", bind ? ssh_get_error(bind.get()) : "out of memory")};
  }
  if (ssh_bind_options_set(bind.get(), SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK)
    return pgod::Unexpected{fmt::format("cannot set up the SSH server: {}", ssh_get_error(bind.get()))};
  spdlog::info("key exchange: {}; host key: ssh-ed25519", fmt::join(key_exchanges, ", "));
  return bind;
}

// The host's name, which `ping` answers with.
pgod::Expected<std::string, std::string> host_name() {
  utsname names{};
  if (auto named = pgod::check_call(uname(&names), "uname"); !named) return pgod::Unexpected{named.error()};
  return std::string(names.nodename);
}

// The KJ event loop, with SIGTERM and SIGINT delivered through it (captured before any thread
// starts, so that every thread inherits the mask that blocks them).
kj::AsyncIoContext start_event_loop() {
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  return kj::setupAsyncIo();
}

void announce_ready(const Listeners& listeners) {
  spdlog::info("ready: ssh on {}, metrics on {}, hooks on {}, uid {}, confined",
               pgod::gateway::socket_address(listeners.ssh.get(), false),
               pgod::gateway::socket_address(listeners.metrics.get(), false),
               pgod::gateway::socket_address(listeners.hooks.get(), false), getuid());
}

// OpenSSL finds SHA-256 through a provider it loads (and may read its config for) on first
// use: that happens here, before the allowlist forbids opening files.
pgod::Expected<pgod::Done, std::string> prepare_hook_crypto() {
  if (pgod::gateway::hmac_sha256_hex("key", "The quick brown fox jumps over the lazy dog") !=
      "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    return pgod::Unexpected{std::string("HMAC-SHA256 does not work in this OpenSSL")};
  return pgod::Done{};
}

// The SSH server, the service poll and /metrics, until SIGTERM or SIGINT.
int serve(kj::AsyncIoContext& io, const Options& options, Listeners& listeners, ssh_bind bind,
          const std::string& host) {
  pgod::gateway::KeyIndex keys;
  pgod::gateway::Metrics metrics;
  pgod::gateway::Backends backends(io, options.rundir, keys);
  pgod::gateway::SshServer server(io, bind, listeners.ssh.get(), backends, keys, metrics, options.limits, host);
  auto metrics_receiver =
      io.lowLevelProvider->wrapListenSocketFd(listeners.metrics.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto hooks_receiver =
      io.lowLevelProvider->wrapListenSocketFd(listeners.hooks.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto serving = server.run()
                     .exclusiveJoin(backends.run(kServicePollInterval))
                     .exclusiveJoin(pgod::gateway::serve_metrics(*metrics_receiver, io.provider->getTimer(), metrics,
                                                                 [&backends]() { return backends.snapshot(); }))
                     .exclusiveJoin(pgod::gateway::serve_hooks(*hooks_receiver, io.provider->getTimer(), backends))
                     .exclusiveJoin(io.unixEventPort.onSignal(SIGTERM).ignoreResult())
                     .exclusiveJoin(io.unixEventPort.onSignal(SIGINT).ignoreResult());
  serving.wait(io.waitScope);
  spdlog::info("stopping");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parse_flags(argc, argv);
  if (!options) return options.error();
  pgod::setup_logging("pgod-gateway", options->debug);
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error to handle, not the end
  raise_fd_limit(options->limits.max_connections);

  // Privileged: what needs root or a file, before both are given up.
  auto listeners = open_listeners(*options);
  if (!listeners) return fail(listeners.error());
  auto bind = load_host_key(*options);
  if (!bind) return fail(bind.error());
  auto host = host_name();
  if (!host) return fail(host.error());
  if (auto crypto = prepare_hook_crypto(); !crypto) return fail(crypto.error());
  auto io = start_event_loop();

  // Confined: from here on no exec, no fork, no file, no new network socket but a unix one.
  if (auto dropped = pgod::gateway::drop_root(options->user); !dropped)
    return fail(fmt::format("cannot become {}: {}", options->user, dropped.error()));
  if (auto confined = pgod::gateway::install_gateway_filter(); !confined)
    return fail("cannot install the seccomp allowlist: " + confined.error());
  announce_ready(*listeners);
  return serve(io, *options, *listeners, bind->get(), *host);
}
