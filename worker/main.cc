// pgod-worker: one service's whole job, as that service's user. This part: its command
// line and reading the settings message; tracking, compose and the RPC server follow.
#include <capnp/serialize.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "flags.h"
#include "logging.h"
#include "secret.h"
#include "settings.capnp.h"
#include "unique_fd.h"

int main(int argc, char** argv) {
  std::string settings_path;
  std::string socket_path;
  bool help = false;
  bool version = false;
  pgod::FlagSet flags("pgod-worker");
  flags.add_string(0, "settings", &settings_path, "file holding this service's settings (a Cap'n Proto message)", "file");
  flags.add_string(0, "socket", &socket_path, "unix socket to listen on (by hand; pgod passes a listening fd)", "path");
  flags.add_bool('v', "version", &version, "show version and exit");
  flags.add_bool('h', "help", &help, "show this help and exit");
  auto positional = flags.parse({argv + 1, argv + argc});
  if (!positional) {
    fmt::print(stderr, "pgod-worker: {}\n", positional.error());
    return 1;
  }
  if (help) {
    fmt::print("{}", flags.usage("--settings FILE --socket PATH"));
    return 0;
  }
  if (version) {
    fmt::print("pgod-worker {}\n", PGOD_VERSION);
    return 0;
  }
  if (settings_path.empty()) {
    fmt::print(stderr, "pgod-worker: --settings FILE is required\n");
    return 1;
  }
  const pgod::UniqueFd fd(open(settings_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    fmt::print(stderr, "pgod-worker: cannot open {}: {}\n", settings_path, std::strerror(errno));
    return 1;
  }
  try {
    capnp::StreamFdMessageReader message(fd.get());
    auto settings = message.getRoot<pgod::rpc::ServiceSettings>();
    pgod::setup_logging(settings.getName().cStr(), settings.getDebug());
    spdlog::info("settings read: user {}, repository {}", settings.getUser().cStr(),
                 pgod::redact_url(settings.getRepository().cStr()));
  } catch (const kj::Exception& error) {
    fmt::print(stderr, "pgod-worker: {}: not a settings message: {}\n", settings_path, error.getDescription().cStr());
    return 1;
  }
  spdlog::error("serving the worker interface is not implemented yet");
  return 1;
}
