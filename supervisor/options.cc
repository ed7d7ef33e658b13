#include "options.h"

#include <fmt/format.h>

#include <filesystem>
#include <string_view>

#include "compose_program.h"
#include "duration.h"
#include "flags.h"
#include "gateway_limits.h"
#include "listen_address.h"

namespace pgod::supervisor {
namespace {

std::optional<std::string> check_directory(std::string_view flag, const std::string& path) {
  if (path.empty() || path.front() != '/') return fmt::format("{} must be an absolute path, got \"{}\"", flag, path);
  if (std::filesystem::path(path).lexically_normal() == "/") return fmt::format("{} may not be /", flag);
  return std::nullopt;
}

// Whether `a` and `b` are the same directory or one holds the other, by their names.
bool directories_overlap(const std::string& a, const std::string& b) {
  const auto normal = [](const std::string& path) {
    auto text = std::filesystem::path(path).lexically_normal().string();
    while (!text.empty() && text.back() == '/') text.pop_back();
    return text + "/";  // "/" for the root, which holds everything
  };
  const auto left = normal(a), right = normal(b);
  return left.starts_with(right) || right.starts_with(left);
}

// Every flag of pgod(8), in --help's order, each writing into `o`.
void register_flags(FlagSet& flags, Options& o) {
  flags.add_string('c', "config", &o.config, "config file to read", "file");
  flags.add_string('d', "dir", &o.dir, "directory to check out the git repositories in (kept across reboots)", "dir");
  flags.add_string('s', "ssh", &o.ssh, "ssh address to listen on", "addr");
  flags.add_duration('t', "duration", &o.duration, "duration between pulls (plus up to half of it as jitter)");
  flags.add_string(0, "datadir", &o.datadir, "directory where NFS shares are mounted, as <datadir>/<service>", "dir");
  flags.add_bool(0, "debug", &o.debug, "enable debug logging");
  flags.add_bool(0, "restart", &o.restart, "reload the config when the file changes");
  flags.add_string('m', "metrics", &o.metrics, "address for the Prometheus /metrics endpoint", "addr");
  flags.add_string(0, "hooks", &o.hooks,
                   "address for push hooks, POST /hooks/<service> (loopback by default: put a TLS proxy in front)",
                   "addr");
  flags.add_bool(0, "check", &o.check,
                 "validate the config file, print a summary or every error; as root, also list the services whose "
                 "deployed compose model this version's policy refuses (see -d); exit");
  flags.add_string(0, "compose", &o.compose,
                   "the compose program workers run: auto (docker compose when it answers, else docker-compose), "
                   "plugin (docker compose) or standalone (docker-compose)",
                   "program");
  flags.add_string(0, "rundir", &o.rundir, "directory for supervisor.sock and workers/<service>.sock", "dir");
  flags.add_bool(0, "no-gateway", &o.no_gateway, "do not start pgod-gateway (it runs as its own systemd unit)");
  flags.add_string(0, "gateway-user", &o.gateway_user, "user the gateway runs as; its group may use the worker sockets",
                   "user");
  flags.add_string(0, "gateway-limits", &o.gateway_limits,
                   "limits for the gateway pgod starts, as name=value,... of pgod-gateway's limit flags without "
                   "the dashes (e.g. max-sessions=4,login-timeout=10s)",
                   "list");
  flags.add_string(0, "host-key", &o.host_key,
                   "the gateway's SSH host key (ed25519, made on first start when missing; root-only)", "file");
  flags.add_string(0, "worker-program", &o.worker_program, "the worker program (default: pgod-worker beside pgod)",
                   "file");
  flags.add_string(0, "gateway-program", &o.gateway_program, "the gateway program (default: pgod-gateway beside pgod)",
                   "file");
  flags.add_string(0, "dockergate-user", &o.dockergate_user,
                   "user the docker gate runs as: the only user pgod puts in the docker group", "user");
  flags.add_string(0, "dockergate-program", &o.dockergate_program,
                   "the docker gate program (default: pgod-dockergate beside pgod)", "file");
  flags.add_string(0, "docker-socket", &o.docker_socket, "dockerd's socket, which only the docker gate opens", "file");
  flags.add_bool(0, "no-dockergate", &o.no_dockergate,
                 "do not start pgod-dockergate (it runs as its own systemd unit and takes the services' sockets "
                 "from <rundir>/dockergate.sock)");
  flags.add_bool(0, "docker-direct", &o.docker_direct,
                 "no docker gate at all: workers get no DOCKER_HOST from pgod and no docker group (for tests "
                 "with a stand-in docker)");
  flags.add_string(0, "mount-program", &o.mount_program, "program that mounts NFS shares (called like mount(8))",
                   "file");
  flags.add_string(0, "umount-program", &o.umount_program, "program that unmounts them (called like umount(8))",
                   "file");
  flags.add_bool(0, "mount-with-systemd", &o.mount_with_systemd,
                 "mount NFS shares with systemd-mount --collect and unmount them with systemd-umount, so that "
                 "systemd makes them in the host's namespace (pgod.service runs in a private one)");
  flags.add_string(0, "path-prefix", &o.path_prefix, "directory put before PATH in workers (for tests)", "dir");
  flags.add_bool(0, "no-root-check", &o.no_root_check,
                 "run without root (for tests): workers keep pgod's own user and groups");
  flags.add_bool(0, "status", &o.status, "print the running pgod's services and workers, and exit");
  flags.add_string(0, "restart-worker", &o.restart_worker, "ask the running pgod to restart this service's worker",
                   "service");
  flags.add_bool(0, "make-host-key", &o.make_host_key,
                 "make the --host-key file if it is missing, print its fingerprint, and exit (for a gateway run "
                 "as its own unit)");
  flags.add_bool('v', "version", &o.version, "show version and exit");
  flags.add_bool('h', "help", &o.help, "show this help and exit");
}

// What the flags cannot check one by one: values, absolute paths, flags that exclude each
// other. --gateway-limits is turned into the gateway's arguments here.
Expected<Done, std::string> validate(Options& o) {
  if (o.config.empty()) return Unexpected{std::string("-c/--config must name a file")};
  if (o.duration <= std::chrono::nanoseconds::zero())
    return Unexpected{fmt::format("-t/--duration must be positive, got {}", format_duration(o.duration))};
  if (!parse_compose_program(o.compose))
    return Unexpected{fmt::format("--compose must be {}, got \"{}\"", kComposeProgramChoices, o.compose)};
  if (auto problem = check_directory("-d/--dir", o.dir)) return Unexpected{*problem};
  if (auto problem = check_directory("--rundir", o.rundir)) return Unexpected{*problem};
  for (auto [flag, value] :
       {std::pair{"--worker-program", &o.worker_program}, std::pair{"--gateway-program", &o.gateway_program},
        std::pair{"--mount-program", &o.mount_program}, std::pair{"--umount-program", &o.umount_program},
        std::pair{"--path-prefix", &o.path_prefix}, std::pair{"--host-key", &o.host_key}}) {
    if (!value->empty() && value->front() != '/')
      return Unexpected{fmt::format("{} must be an absolute path, got \"{}\"", flag, *value)};
  }
  if (!o.datadir.empty()) {
    if (auto problem = check_directory("--datadir", o.datadir)) return Unexpected{*problem};
    // <datadir>/<service> is a bind root for the service's containers: it must hold no
    // checkout, state directory (the git directory, DOCKER_CONFIG) or socket.
    for (auto [flag, value] : {std::pair{"-d/--dir", &o.dir}, std::pair{"--rundir", &o.rundir}}) {
      if (directories_overlap(o.datadir, *value))
        return Unexpected{
            fmt::format("--datadir {} and {} {} overlap: containers may bind below <datadir>/<service>, "
                        "so it must not hold or be inside pgod's own directories",
                        o.datadir, flag, *value)};
    }
  }
  if (o.mount_with_systemd &&
      (o.mount_program != Options{}.mount_program || o.umount_program != Options{}.umount_program))
    return Unexpected{
        std::string("--mount-with-systemd chooses the mount programs: drop --mount-program and --umount-program")};
  auto limit_args = gateway_limit_args(o.gateway_limits);
  if (!limit_args) return Unexpected{limit_args.error()};
  o.gateway_limit_args = std::move(*limit_args);
  if (o.no_gateway && !o.gateway_limit_args.empty())
    return Unexpected{
        std::string("--gateway-limits is for the gateway pgod starts: with --no-gateway, give the "
                    "limits to pgod-gateway itself")};
  for (auto [flag, value] :
       {std::pair{"-s/--ssh", &o.ssh}, std::pair{"-m/--metrics", &o.metrics}, std::pair{"--hooks", &o.hooks}}) {
    if (auto address = parse_listen_address(*value); !address)
      return Unexpected{fmt::format("{}: {}", flag, address.error())};
  }
  return Done{};
}

}  // namespace

Expected<ParsedOptions, std::string> parse_options(const std::vector<std::string>& args) {
  ParsedOptions parsed;
  FlagSet flags("pgod");
  register_flags(flags, parsed.options);
  parsed.usage = flags.usage("[OPTION]... [-c CONFIG]");

  auto positional = flags.parse(args);
  if (!positional) return Unexpected{positional.error()};
  if (parsed.options.help || parsed.options.version) return parsed;
  if (!positional->empty())
    return Unexpected{fmt::format("unexpected argument \"{}\" (see pgod --help)", positional->front())};
  if (auto valid = validate(parsed.options); !valid) return Unexpected{valid.error()};
  return parsed;
}

}  // namespace pgod::supervisor
