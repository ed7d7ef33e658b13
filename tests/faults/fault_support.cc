#include "fault_support.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "rpc_verbs.h"
#include "worker.capnp.h"

namespace pgod::test::faults {
namespace {

namespace fs = std::filesystem;

// timeout(1) ends a client that hangs; -k: SIGKILL if SIGTERM did not do it.
const std::vector<std::string> kBounded = {"/usr/bin/timeout", "-k", "5", "60"};

}  // namespace

std::string make_key(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  auto made = run_process({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name + "@faults", "-f", path});
  if (made.exit_code != 0) throw std::runtime_error("ssh-keygen: " + made.err);
  return path;
}

std::vector<std::string> GatewayPorts::pgod_args() const {
  return {"--gateway-program",
          programs_dir() + "/pgod-gateway",
          "-s",
          "127.0.0.1:" + std::to_string(ssh),
          "-m",
          "127.0.0.1:" + std::to_string(metrics)};
}

std::vector<std::string> ssh_argv(int port, const std::string& key, const std::string& command,
                                  const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {"/usr/bin/ssh",
                                   "-F",
                                   "/dev/null",
                                   "-p",
                                   std::to_string(port),
                                   "-i",
                                   key,
                                   "-o",
                                   "IdentitiesOnly=yes",
                                   "-o",
                                   "IdentityAgent=none",
                                   "-o",
                                   "StrictHostKeyChecking=no",
                                   "-o",
                                   "UserKnownHostsFile=/dev/null",
                                   "-o",
                                   "BatchMode=yes",
                                   "-o",
                                   "LogLevel=ERROR",
                                   "-o",
                                   "ConnectTimeout=20"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("tester@127.0.0.1");
  if (!command.empty()) argv.push_back(command);
  return argv;
}

ProcessResult ssh(int port, const std::string& key, const std::string& command, const std::vector<std::string>& extra) {
  auto argv = kBounded;
  const auto ssh = ssh_argv(port, key, command, extra);
  argv.insert(argv.end(), ssh.begin(), ssh.end());
  return run_process(argv);
}

ProcessResult pgoctl(int port, const std::string& known_hosts, const std::string& key, const std::string& target,
                     const std::vector<std::string>& args) {
  std::vector<std::string> argv = kBounded;
  argv.insert(argv.end(), {PGOCTL_BIN, "-p", std::to_string(port), "--known-hosts", known_hosts, "-i", key, "--",
                           "127.0.0.1:" + target});
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

WorkerAnswer worker_status(const std::string& socket_path, Millis limit) {
  WorkerAnswer answer;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 auto io = kj::setupAsyncIo();
                 // The RPC system goes before the stream it runs on; both outlive the call.
                 struct Connection {
                   kj::Own<kj::AsyncIoStream> stream;
                   kj::Own<capnp::TwoPartyClient> client;
                   ~Connection() { client = nullptr; }
                 };
                 Connection connection;
                 auto call = io.provider->getNetwork()
                                 .parseAddress(kj::str("unix:", socket_path.c_str()))
                                 .then([](kj::Own<kj::NetworkAddress> address) {
                                   auto connected = address->connect();
                                   return connected.attach(kj::mv(address));
                                 })
                                 .then([&connection](kj::Own<kj::AsyncIoStream> stream) {
                                   connection.stream = kj::mv(stream);
                                   connection.client = kj::heap<capnp::TwoPartyClient>(*connection.stream);
                                   return connection.client->bootstrap().castAs<rpc::Worker>().statusRequest().send();
                                 })
                                 .then([&answer](capnp::Response<rpc::Worker::StatusResults> response) {
                                   auto status = response.getStatus();
                                   answer.answered = true;
                                   answer.state = service_state_name(status.getState());
                                   answer.hash = status.getHash().cStr();
                                   answer.last_error = status.getLastError().cStr();
                                   return true;
                                 });
                 auto timed = call.exclusiveJoin(
                     io.provider->getTimer().afterDelay(limit.count() * kj::MILLISECONDS).then([]() { return false; }));
                 if (!timed.wait(io.waitScope))
                   answer.failure = "no answer within " + std::to_string(limit.count()) + " ms";
               })) {
    answer.answered = false;
    answer.failure = exception->getDescription().cStr();
  }
  return answer;
}

bool has_exited(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return true;
  const auto paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] == 'Z' || text[paren + 2] == 'X';
}

std::vector<pid_t> processes_of(const std::string& program) {
  std::vector<pid_t> pids;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc", error)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code ignored;
    const auto exe = fs::read_symlink(entry.path() / "exe", ignored).string();
    if (exe == program || exe == program + " (deleted)") {
      const pid_t pid = std::stoi(name);
      if (!has_exited(pid)) pids.push_back(pid);
    }
  }
  return pids;
}

std::size_t fd_count(pid_t pid) { return proc_fds(pid).size(); }

std::size_t raise_fd_limit(std::size_t wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) throw std::system_error(errno, std::generic_category(), "getrlimit");
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = std::min<rlim_t>(wanted, limit.rlim_max);
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) throw std::system_error(errno, std::generic_category(), "setrlimit");
  }
  return limit.rlim_cur;
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

Spread spread(std::vector<Millis> samples) {
  Spread out;
  if (samples.empty()) return out;
  std::sort(samples.begin(), samples.end());
  const auto n = samples.size();
  out.median_ms = n % 2 == 1 ? static_cast<double>(samples[n / 2].count())
                             : (samples[n / 2 - 1].count() + samples[n / 2].count()) / 2.0;
  out.max_ms = static_cast<double>(samples.back().count());
  return out;
}

}  // namespace pgod::test::faults
