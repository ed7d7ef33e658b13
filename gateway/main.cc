// pgod-gateway: the unprivileged SSH front door. This part: its command line; the SSH
// server, routing and /metrics follow.
#include <fmt/format.h>
#include <libssh/libssh.h>
#include <seccomp.h>
#include <spdlog/spdlog.h>

#include "flags.h"
#include "listen_address.h"
#include "logging.h"

int main(int argc, char** argv) {
  std::string ssh_address = ":2222";
  std::string metrics_address = ":9112";
  std::string host_key = "/etc/pgo/ssh_host_ed25519_key";
  std::string rundir = "/run/pgod";
  std::string ssh_fd, metrics_fd;
  bool debug = false;
  bool help = false;
  bool version = false;
  pgod::FlagSet flags("pgod-gateway");
  flags.add_string('s', "ssh", &ssh_address, "ssh address to listen on", "addr");
  flags.add_string('m', "metrics", &metrics_address, "address for the Prometheus /metrics endpoint", "addr");
  flags.add_string(0, "host-key", &host_key, "the ed25519 host key", "file");
  flags.add_string(0, "ssh-fd", &ssh_fd, "inherited listening socket for SSH (pgod passes it; replaces -s)", "fd");
  flags.add_string(0, "metrics-fd", &metrics_fd, "inherited listening socket for /metrics (replaces -m)", "fd");
  flags.add_string(0, "rundir", &rundir, "directory holding supervisor.sock and workers/", "dir");
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
  for (const auto* address : {&ssh_address, &metrics_address}) {
    if (auto parsed = pgod::parse_listen_address(*address); !parsed) {
      fmt::print(stderr, "pgod-gateway: {}\n", parsed.error());
      return 1;
    }
  }
  pgod::setup_logging("pgod-gateway", debug);
  spdlog::error("the SSH server is not implemented yet");
  return 1;
}
