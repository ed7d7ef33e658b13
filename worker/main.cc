// pgod-worker: one service's whole job, as that service's user. Started by pgod (settings on
// an inherited fd, the listening socket inherited) or by hand for tests and debugging:
//
//   pgod-worker --settings FILE --socket PATH
//
// Two one-shot modes, also started by pgod: --retire (a removed service's project brought
// down) and --judge-saved-model (for `pgod --check`: this version's policy on the model the
// service's worker last deployed).
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "compose.h"
#include "compose_policy.h"
#include "compose_program.h"
#include "fd_passing.h"
#include "flags.h"
#include "logging.h"
#include "rpc_server.h"
#include "safe_files.h"
#include "service.h"
#include "settings.capnp.h"
#include "system_call.h"
#include "unique_fd.h"

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only: LeakSanitizer stops the world with ptrace, which the seccomp filter pgod
// installs refuses, and it would turn every exit into a failure. Leaks are still checked where
// the worker runs unconfined (the worker tests pass ASAN_OPTIONS, which wins over this).
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

namespace {

// Settings are small; this bounds what a corrupted file can make us allocate.
capnp::ReaderOptions settings_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 1 << 20;
  options.nestingLimit = 8;
  return options;
}

int parse_fd(const std::string& text, const char* flag) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 6)
    pgod::worker::fail(fmt::format("{} needs a file descriptor number, got \"{}\"", flag, text));
  return std::stoi(text);
}

pgod::UniqueFd bind_socket(const std::string& path) {
  pgod::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) pgod::worker::fail(pgod::os_error("socket", "", errno));
  // The gateway sends no descriptors: where the kernel can, it refuses them (fd_passing.h).
  if (!pgod::refuse_descriptors(fd.get()) && errno != ENOPROTOOPT)
    pgod::worker::fail(pgod::os_error("setsockopt SO_PASSRIGHTS", path, errno));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) pgod::worker::fail(fmt::format("socket path too long: {}", path));
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  struct stat info {};
  // Replace a stale socket from an earlier run, never anything else.
  if (lstat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode)) unlink(path.c_str());
  if (auto bound =
          pgod::check_call(bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), "bind", path);
      !bound)
    pgod::worker::fail(bound.error());
  if (auto listening = pgod::check_call(listen(fd.get(), 64), "listen", path); !listening)
    pgod::worker::fail(listening.error());
  return fd;
}

// The saved model can be as large as compose's output; this bounds what a planted file costs.
constexpr off_t kMaxSavedModelBytes = 16 << 20;

// Exit codes of --judge-saved-model, for pgod --check.
constexpr int kJudgedAccepted = 0;  // also when nothing was deployed yet
constexpr int kJudgedRefused = 1;   // stdout: each reason on a line of its own
constexpr int kCannotJudge = 2;     // stdout: why, on one line

// --judge-saved-model: the model this service's worker last deployed (compose.validated.yaml
// in its state directory, rechecked by every worker at start) judged by this version's policy,
// with the host files its checkout's compose file reads, so that `pgod --check` can say before
// an upgrade which services the new worker will refuse.
// Read as the service's user, who wrote it; a model that cannot be judged is refused, as the
// worker refuses it.
int judge_saved_model(pgod::rpc::ServiceSettings::Reader settings) {
  const std::string path = std::string(settings.getStateDir().cStr()) + "/compose.validated.yaml";
  // O_NONBLOCK: a FIFO planted there must not hang the judge.
  const pgod::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    if (errno == ENOENT) return kJudgedAccepted;  // nothing deployed yet: nothing to refuse
    fmt::print("cannot read {}: {}\n", path, pgod::errno_text(errno));
    return kCannotJudge;
  }
  struct stat info {};
  if (fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) {
    fmt::print("{}: not a regular file\n", path);
    return kCannotJudge;
  }
  if (info.st_size > kMaxSavedModelBytes) {
    fmt::print("{}: larger than {} bytes\n", path, kMaxSavedModelBytes);
    return kCannotJudge;
  }
  // Read to the end even so: the file may have grown since fstat.
  const auto text = pgod::read_bounded(fd.get(), static_cast<std::size_t>(kMaxSavedModelBytes), path);
  if (!text) {
    fmt::print("{}\n", text.error());
    return kCannotJudge;
  }
  const auto context = pgod::worker::policy_context(settings);
  const auto verdict = pgod::worker::check_compose_policy(*text, context);
  if (!verdict) {
    fmt::print("cannot judge the compose file: {}\n", verdict.error());  // the worker's words
    return kJudgedRefused;
  }
  for (const auto& violation : *verdict) fmt::print("{}\n", violation.to_string());
  // The files compose reads from the checkout as the new worker will judge them at its first
  // deploy: Compose v1 folds env_file into the saved model, so the model alone can look clean.
  std::vector<pgod::worker::Violation> host_files;
  if (const auto compose_file = pgod::worker::find_compose_file(settings); !compose_file.empty())
    host_files = pgod::worker::check_raw_host_files(context, compose_file);
  for (const auto& violation : host_files) fmt::print("{}\n", violation.to_string());
  return verdict->empty() && host_files.empty() ? kJudgedAccepted : kJudgedRefused;
}

struct Options {
  std::string settings_path, settings_fd_text, socket_path, listen_fd_text, path_prefix, compose_program;
  bool debug = false, help = false, version = false, retire = false, judge = false;
};

// The options that exclude or need each other.
std::optional<int> check_options(const Options& options) {
  if (options.settings_path.empty() == options.settings_fd_text.empty()) {
    fmt::print(stderr, "pgod-worker: --settings FILE is required (or --settings-fd N)\n");
    return 1;
  }
  if (options.retire && options.judge) {
    fmt::print(stderr, "pgod-worker: --retire and --judge-saved-model are two different jobs: give one\n");
    return 1;
  }
  if (!options.retire && !options.judge && options.socket_path.empty() == options.listen_fd_text.empty()) {
    fmt::print(stderr, "pgod-worker: --socket PATH is required (or --listen-fd N)\n");
    return 1;
  }
  return std::nullopt;
}

// The command line read into `options`; an exit code when there is nothing more to do (help,
// version) or it is wrong (the reason printed), nullopt to go on.
std::optional<int> parse_options(int argc, char** argv, Options& options) {
  pgod::FlagSet flags("pgod-worker");
  flags.add_string(0, "settings", &options.settings_path,
                   "file holding this service's settings (a Cap'n Proto message)", "file");
  flags.add_string(0, "settings-fd", &options.settings_fd_text,
                   "read the settings from this inherited fd (pgod uses it)", "fd");
  flags.add_string(0, "socket", &options.socket_path, "unix socket to bind and listen on (by hand)", "path");
  flags.add_string(0, "listen-fd", &options.listen_fd_text, "inherited listening socket (pgod uses it)", "fd");
  flags.add_string(0, "compose", &options.compose_program,
                   "force the compose program: plugin (docker compose) or standalone (docker-compose); default: "
                   "the settings, else the plugin when it answers",
                   "program");
  flags.add_string(0, "path-prefix", &options.path_prefix, "directory put before PATH for docker programs (tests only)",
                   "dir");
  flags.add_bool(0, "retire", &options.retire,
                 "one-shot for a service removed from the config: compose down --remove-orphans, then exit "
                 "(no socket needed)");
  flags.add_bool(0, "judge-saved-model", &options.judge,
                 "one-shot for pgod --check: judge the deployed model (compose.validated.yaml in the state "
                 "directory) by this version's policy, print each reason it is refused, exit 0 (accepted), "
                 "1 (refused) or 2 (cannot judge); no socket needed");
  flags.add_bool(0, "debug", &options.debug, "enable debug logging");
  flags.add_bool('v', "version", &options.version, "show version and exit");
  flags.add_bool('h', "help", &options.help, "show this help and exit");
  auto positional = flags.parse({argv + 1, argv + argc});
  if (!positional) {
    fmt::print(stderr, "pgod-worker: {}\n", positional.error());
    return 1;
  }
  if (options.help) {
    fmt::print("{}", flags.usage("(--settings FILE | --settings-fd N) (--socket PATH | --listen-fd N)"));
    return 0;
  }
  if (options.version) {
    fmt::print("pgod-worker {}\n", PGOD_VERSION);
    return 0;
  }
  return check_options(options);
}

// The settings message from --settings or --settings-fd (closed once read); null when it
// cannot be read, the reason printed.
kj::Own<capnp::StreamFdMessageReader> read_settings(const Options& options) {
  pgod::UniqueFd settings_fd(options.settings_path.empty() ? parse_fd(options.settings_fd_text, "--settings-fd")
                                                           : open(options.settings_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!settings_fd) {
    fmt::print(stderr, "pgod-worker: cannot open {}: {}\n", options.settings_path, pgod::errno_text(errno));
    return {};
  }
  kj::Own<capnp::StreamFdMessageReader> message;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 message = kj::heap<capnp::StreamFdMessageReader>(settings_fd.get(), settings_options());
               })) {
    fmt::print(stderr, "pgod-worker: {}: not a settings message: {}\n",
               options.settings_path.empty() ? "--settings-fd" : options.settings_path,
               exception->getDescription().cStr());
    return {};
  }
  return message;
}

bool has_required_settings(pgod::rpc::ServiceSettings::Reader settings, bool judge) {
  if (settings.getName().size() > 0 && settings.getCheckoutDir().size() > 0 && settings.getStateDir().size() > 0 &&
      (settings.getPollIntervalNs() != 0 || judge))
    return true;
  fmt::print(stderr, "pgod-worker: the settings lack name, checkoutDir, stateDir or pollIntervalNs\n");
  return false;
}

// --compose wins over what the settings say: they are copied into `forced` (a message read from
// a file is read-only) and `settings` points there. False, the reason printed, for a bad value.
bool force_compose_program(const std::string& flag, capnp::MallocMessageBuilder& forced,
                           pgod::rpc::ServiceSettings::Reader& settings) {
  const auto program = pgod::parse_compose_program(flag);
  if (!program) {
    fmt::print(stderr, "pgod-worker: --compose must be {}, got \"{}\"\n", pgod::kComposeProgramChoices, flag);
    return false;
  }
  forced.setRoot(settings);
  forced.getRoot<pgod::rpc::ServiceSettings>().setComposeProgram(*program);
  settings = forced.getRoot<pgod::rpc::ServiceSettings>().asReader();
  return true;
}

// Logging, HOME, and the signals the event loop handles: before the event loop exists.
void prepare_process(pgod::rpc::ServiceSettings::Reader settings, bool debug) {
  pgod::setup_logging(settings.getName().cStr(), debug || settings.getDebug());
  // libgit2 and docker read HOME once; it must be this user's, not the supervisor's.
  if (settings.getHome().size() > 0) setenv("HOME", settings.getHome().cStr(), 1);
  kj::UnixEventPort::captureChildExit();
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  signal(SIGPIPE, SIG_IGN);
}

// Serves the socket and runs the reconcile loop until a signal (0) or until either ends (1).
int serve_until_stopped(kj::AsyncIoContext& io, pgod::rpc::ServiceSettings::Reader settings, const Options& options) {
  pgod::UniqueFd listen_fd = options.socket_path.empty()
                                 ? pgod::UniqueFd(parse_fd(options.listen_fd_text, "--listen-fd"))
                                 : bind_socket(options.socket_path);
  auto listener =
      io.lowLevelProvider->wrapListenSocketFd(listen_fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);

  pgod::worker::Service service(io, settings, options.path_prefix);
  // Both loops run for the worker's whole life; if either ends, the worker is no use half
  // alive: exit non-zero so pgod restarts it.
  auto serving =
      pgod::worker::serve_worker(*listener, service, settings.getGatewayUid())
          .then([]() { return std::string("the socket stopped accepting"); },
                [](kj::Exception&& e) { return "serving failed: " + std::string(e.getDescription().cStr()); });
  auto running = service.run().then(
      []() { return std::string("the reconcile loop ended"); },
      [](kj::Exception&& e) { return "the reconcile loop failed: " + std::string(e.getDescription().cStr()); });
  auto failed = serving.exclusiveJoin(kj::mv(running)).then([](std::string why) { return std::make_pair(0, why); });
  auto signalled =
      io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT)).then([](siginfo_t info) {
        return std::make_pair(info.si_signo, std::string());
      });
  const auto [signal_number, why] = signalled.exclusiveJoin(kj::mv(failed)).wait(io.waitScope);
  if (signal_number == 0) {
    spdlog::critical("{}: exiting so that pgod restarts the worker", why);
    return 1;
  }
  spdlog::info("signal {}: stopping (containers keep running)", signal_number);
  return 0;
}

// The worker's life: options, settings, the one-shot modes, then the process set up and the
// service served until a signal.
int run(int argc, char** argv) {
  Options options;
  if (auto done = parse_options(argc, argv, options)) return *done;
  auto message = read_settings(options);
  if (!message) return 1;
  auto settings = message->getRoot<pgod::rpc::ServiceSettings>();
  if (!has_required_settings(settings, options.judge)) return options.judge ? kCannotJudge : 1;
  if (options.judge) return judge_saved_model(settings);
  capnp::MallocMessageBuilder forced_settings;
  if (!options.compose_program.empty() && !force_compose_program(options.compose_program, forced_settings, settings))
    return 1;
  prepare_process(settings, options.debug);
  auto io = kj::setupAsyncIo();
  if (options.retire) {
    pgod::worker::Service service(io, settings, options.path_prefix);
    return service.retire().wait(io.waitScope) == 0 ? 0 : 1;
  }
  return serve_until_stopped(io, settings, options);
}

}  // namespace

int main(int argc, char** argv) {
  // One malloc arena for the worker's two threads (the event loop and the git thread): the
  // second arena's pages stay with every idle worker, and the threads rarely allocate at once.
  mallopt(M_ARENA_MAX, 1);
  int code = 1;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { code = run(argc, argv); })) {
    fmt::print(stderr, "pgod-worker: {}\n", exception->getDescription().cStr());
    return 1;
  }
  return code;
}
