#include "worker_harness.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "compose_programs.h"
#include "docker_env.h"
#include "service_name.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::test {
namespace {}  // namespace

kj::Promise<void> CollectingSink::stdout(StdoutContext context) {
  auto data = context.getParams().getData();
  out_.append(reinterpret_cast<const char*>(data.begin()), data.size());
  return kj::READY_NOW;
}

kj::Promise<void> CollectingSink::stderr(StderrContext context) {
  auto data = context.getParams().getData();
  err_.append(reinterpret_cast<const char*>(data.begin()), data.size());
  return kj::READY_NOW;
}

WorkerHarness::WorkerHarness(const std::string& repository,
                             const std::function<void(rpc::ServiceSettings::Builder)>& configure, bool standin)
    : standin_(standin) {
  const auto& base = root_.path();
  // The worker runs as root in these tests; others must be able to reach the socket for the
  // peer-credential test, so the directory is not private.
  chmod(base.c_str(), 0755);
  bin_ = base + "/bin";
  checkout_ = base + "/dir/web";
  state_dir_ = base + "/state/web";
  stop_file_ = base + "/dir/web.stop";
  socket_ = base + "/web.sock";
  settings_file_ = base + "/settings.bin";
  log_file_ = base + "/worker.log";
  for (const auto& dir : {bin_, checkout_, state_dir_}) std::filesystem::create_directories(dir);
  for (const char* name : {"docker", "docker-compose"})
    std::filesystem::copy_file(PGOD_STANDIN_DOCKER, bin_ + "/" + name);

  capnp::MallocMessageBuilder message;
  auto settings = message.initRoot<rpc::ServiceSettings>();
  settings.setName("web");
  settings.setUser("tester");
  settings.setUid(1000);
  settings.setGid(1000);
  settings.setHome(base);
  settings.setRepository(repository);
  settings.setBranch("main");
  settings.setCheckoutDir(checkout_);
  settings.setStateDir(state_dir_);
  settings.setStopFile(stop_file_);
  settings.setPollIntervalNs(3'600'000'000'000ULL);
  settings.setGatewayUid(12345);
  if (configure) configure(settings);
  if (!standin_ && shared_docker_environment() != nullptr) {
    // The service's socket on a docker gate of its own, as pgod lays it out (run as root here:
    // the harness runs the worker as root too). The engine is up: the gate needs its socket.
    const std::string name = settings.getName().cStr();
    DockerGateService service{name, compose_project_name(name), {settings.getCheckoutDir().cStr()}, {}};
    if (settings.hasDataDir() && settings.getDataDir().size() > 0)
      service.bind_roots.emplace_back(settings.getDataDir().cStr());
    for (auto network : settings.getNetworks()) service.networks.emplace_back(network.cStr());
    DockerGateOptions options;
    options.program = PGOD_DOCKERGATE_BIN;
    options.socket_dir = base + "/docker";
    options.log = base + "/dockergate.log";
    options.debug = true;  // each forwarded call logged: the record to read when compose fails
    gate_ = std::make_unique<DockerGateProcess>(options, std::vector<DockerGateService>{service});
    gate_->wait_ready();
    if (settings.getDockerHost().size() == 0) settings.setDockerHost("unix://" + gate_->socket(name));
  }
  const UniqueFd fd(open(settings_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  capnp::writeMessageToFd(fd.get(), message);
}

WorkerHarness::~WorkerHarness() {
  stop();
  // The worker's own account of what happened is the fastest way to a failure's cause.
  if (::testing::Test::HasFailure())
    std::fprintf(stderr, "--- pgod-worker log ---\n%s--- end ---\n", worker_log().c_str());
  if (::testing::Test::HasFailure() && gate_)
    std::fprintf(stderr, "--- pgod-dockergate log ---\n%s--- end ---\n", gate_log().c_str());
}

void WorkerHarness::start(const std::vector<std::string>& extra_args, bool inherited) {
  const UniqueFd log(open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, log.get(), 2);
  std::vector<std::string> args = {PGOD_WORKER_BIN, "--debug"};
  UniqueFd listener, settings_read;
  if (inherited) {
    listener.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_.c_str());
    unlink(socket_.c_str());
    if (bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listener.get(), 16) != 0)
      throw std::runtime_error("cannot bind the worker socket");
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    settings_read.reset(pipe_fds[0]);
    const UniqueFd settings_write(pipe_fds[1]);
    const auto settings = read_file(settings_file_);
    if (write(settings_write.get(), settings.data(), settings.size()) != static_cast<ssize_t>(settings.size()))
      throw std::runtime_error("cannot write the settings into the pipe");
    // dup2 onto fixed numbers clears FD_CLOEXEC on the copies (the originals keep it).
    posix_spawn_file_actions_adddup2(&actions, listener.get(), 3);
    posix_spawn_file_actions_adddup2(&actions, settings_read.get(), 4);
    args.insert(args.end(), {"--listen-fd", "3", "--settings-fd", "4"});
  } else {
    args.insert(args.end(), {"--settings", settings_file_, "--socket", socket_});
  }
  if (standin_) args.insert(args.end(), {"--path-prefix", bin_});
  // On a real engine, the compose program under test (PGOD_TEST_COMPOSE), never a guess.
  if (!standin_) args.insert(args.end(), {"--compose", compose_under_test()});
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start pgod-worker");

  if (!io_) io_ = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  struct stat info {};
  for (int i = 0; i < 500 && stat(socket_.c_str(), &info) != 0; ++i) usleep(10'000);
  if (stat(socket_.c_str(), &info) != 0)
    throw std::runtime_error("the worker's socket never appeared:\n" + worker_log());
  auto address = io_->provider->getNetwork().parseAddress(kj::str("unix:", socket_.c_str())).wait(io_->waitScope);
  // The file exists from bind(); connections are refused until listen().
  for (int attempt = 0;; ++attempt) {
    KJ_IF_MAYBE (failure, kj::runCatchingExceptions([&]() { connection_ = address->connect().wait(io_->waitScope); })) {
      if (attempt > 200) throw std::runtime_error("cannot connect to the worker:\n" + worker_log());
      usleep(10'000);
      continue;
    }
    break;
  }
  rpc_ = kj::heap<capnp::TwoPartyClient>(*connection_);
}

int WorkerHarness::stop() {
  rpc_ = nullptr;
  connection_ = nullptr;
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  unlink(socket_.c_str());  // so a restart waits for the new worker's socket
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

rpc::Worker::Client WorkerHarness::client() { return rpc_->bootstrap().castAs<rpc::Worker>(); }

RunOutcome WorkerHarness::run(rpc::Verb verb, const std::vector<std::string>& args) {
  RunOutcome outcome;
  auto request = client().runRequest();
  request.setVerb(verb);
  auto list = request.initArgs(static_cast<unsigned>(args.size()));
  for (unsigned i = 0; i < args.size(); ++i) list.set(i, args[i]);
  request.setOutput(kj::heap<CollectingSink>(outcome.out, outcome.err));
  request.setCaller("test");
  auto response = request.send().wait(io_->waitScope);
  outcome.exit_status = response.getExitStatus();
  outcome.message = response.getMessage();
  return outcome;
}

rpc::ServiceState WorkerHarness::state() {
  return client().statusRequest().send().wait(io_->waitScope).getStatus().getState();
}

bool WorkerHarness::wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    sleep(std::chrono::milliseconds(20));
  }
  return true;
}

void WorkerHarness::sleep(std::chrono::milliseconds duration) {
  io_->provider->getTimer().afterDelay(duration.count() * kj::MILLISECONDS).wait(io_->waitScope);
}

std::string WorkerHarness::calls() const { return read_file(bin_ + "/calls.log"); }
void WorkerHarness::clear_calls() const { std::ofstream(bin_ + "/calls.log", std::ios::trunc); }
std::string WorkerHarness::worker_log() const { return read_file(log_file_); }
std::string WorkerHarness::gate_log() const { return gate_ ? gate_->log_text() : std::string(); }
void WorkerHarness::touch(const std::string& name) const { std::ofstream(bin_ + "/" + name) << ""; }

}  // namespace pgod::test
