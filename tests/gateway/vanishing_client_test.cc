// Clients that go away while their command waits on a quiet container: whatever way they go
// (a signal to ssh or pgoctl, a kill, a connection that silently stops answering), the gateway
// notices, the worker kills the compose process group, and nothing is left holding a slot.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "gateway_fixture.h"

namespace pgod::test {
namespace {

enum class Client { kSsh, kPgoctl };

// One way for a client to go: which client, and the signal it gets.
struct Ending {
  Client client;
  int signal_number;
};

std::string ending_name(const ::testing::TestParamInfo<Ending>& info) {
  return std::string(info.param.client == Client::kSsh ? "Ssh" : "Pgoctl") + sigabbrev_np(info.param.signal_number);
}

// The first of `candidates` that is an executable file; throws, naming the package, when none is.
std::string required_tool(const std::vector<std::string>& candidates, const std::string& package) {
  for (const auto& path : candidates)
    if (access(path.c_str(), X_OK) == 0) return path;
  throw std::runtime_error(candidates.front() + " is missing: install " + package +
                           " (deploy/install-deps.sh test installs it); this test cannot run without it");
}

void must(const std::vector<std::string>& argv) {
  const auto result = run_process(argv);
  if (result.exit_code == 0) return;
  std::string line;
  for (const auto& arg : argv) line += (line.empty() ? "" : " ") + arg;
  throw std::runtime_error(line + " failed (exit " + std::to_string(result.exit_code) + "): " + result.err +
                           result.out);
}

// A network namespace of the test's own, joined to the host by a veth pair on a private /30
// (10.213.X.Y, an X no address or route of the host uses): connections from inside reach only the
// host's end of the pair. Everything it made (the namespace, the pair, the drop rules, which live
// in the namespace) goes when it goes, however the test ends.
class TestNetns {
 public:
  TestNetns() {
    ip_ = required_tool({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}, "iproute2");
    iptables_ = required_tool({"/usr/sbin/iptables", "/sbin/iptables"}, "iptables");
    const std::string tag = std::to_string(getpid() % 1000000) + "n" + std::to_string(++made_);
    name_ = "pgvc" + tag;
    host_veth_ = "pvh" + tag;  // at most 15 characters, as interface names must be
    inner_veth_ = "pvn" + tag;
    const auto used = run_process({ip_, "-4", "-o", "addr", "show"}).out + run_process({ip_, "-4", "route"}).out;
    std::mt19937 random(static_cast<unsigned>(getpid()) * 7919u + static_cast<unsigned>(made_));
    for (int tries = 0; tries < 100 && host_address_.empty(); ++tries) {
      const auto x = random() % 256, y = (random() % 64) * 4;
      const std::string prefix = "10.213." + std::to_string(x) + ".";
      if (used.find(prefix) != std::string::npos) continue;
      host_address_ = prefix + std::to_string(y + 1);
      inner_address_ = prefix + std::to_string(y + 2);
    }
    if (host_address_.empty()) throw std::runtime_error("no free 10.213.X.0/24 on this host");
    // A constructor that throws runs no destructor: undo what was made before passing it on.
    try {
      must({ip_, "netns", "add", name_});
      must({ip_, "link", "add", host_veth_, "type", "veth", "peer", "name", inner_veth_, "netns", name_});
      must({ip_, "addr", "add", host_address_ + "/30", "dev", host_veth_});
      must({ip_, "link", "set", host_veth_, "up"});
      must({ip_, "-n", name_, "addr", "add", inner_address_ + "/30", "dev", inner_veth_});
      must({ip_, "-n", name_, "link", "set", inner_veth_, "up"});
      must({ip_, "-n", name_, "link", "set", "lo", "up"});
    } catch (...) {
      remove();
      throw;
    }
  }
  ~TestNetns() { remove(); }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  const std::string& host_address() const { return host_address_; }

  // `argv` run inside the namespace (ip netns exec execs it: the pid is the program's).
  std::vector<std::string> inside(const std::vector<std::string>& argv) const {
    std::vector<std::string> wrapped = {ip_, "netns", "exec", name_};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
  }

  // From now on every packet into or out of the namespace is dropped: no FIN, no reset, no ICMP;
  // its connections simply stop answering.
  void drop_everything() const {
    must(inside({iptables_, "-w", "-A", "INPUT", "-j", "DROP"}));
    must(inside({iptables_, "-w", "-A", "OUTPUT", "-j", "DROP"}));
  }

 private:
  // The pair goes with either end; the namespace once its name is gone and nothing runs in it.
  // Either may not exist (yet): their errors say nothing then.
  void remove() const {
    run_process({ip_, "link", "del", host_veth_});
    run_process({ip_, "netns", "del", name_});
  }

  inline static int made_ = 0;
  std::string ip_, iptables_, name_, host_veth_, inner_veth_, host_address_, inner_address_;
};

// A TCP port free on `address` a moment ago.
int free_port_on(const std::string& address) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in bound{};
  bound.sin_family = AF_INET;
  socklen_t size = sizeof bound;
  if (!fd || inet_pton(AF_INET, address.c_str(), &bound.sin_addr) != 1 ||
      bind(fd.get(), reinterpret_cast<const sockaddr*>(&bound), sizeof bound) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &size) != 0)
    throw std::runtime_error("no free port on " + address);
  return ntohs(bound.sin_port);
}

// The wait status of a child that ends within `limit`, or nullopt (then it is still running).
std::optional<int> reap_within(pid_t pid, std::chrono::milliseconds limit) {
  int status = 0;
  if (PgodHarness::wait_for([&]() { return waitpid(pid, &status, WNOHANG) == pid; }, limit)) return status;
  return std::nullopt;
}

std::string describe_status(std::optional<int> status) {
  if (!status) return "still running";
  if (WIFEXITED(*status)) return "exit " + std::to_string(WEXITSTATUS(*status));
  if (WIFSIGNALED(*status)) return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(*status));
  return "status " + std::to_string(*status);
}

using Clock = std::chrono::steady_clock;

long milliseconds_since(Clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

class VanishingClientTest : public PgoctlGatewayTest {
 protected:
  // A `logs -f` that prints one line and then nothing, as against a quiet container.
  void quiet_logs() { std::ofstream(pgod_.standin_dir() + "/logs-quiet") << "\n"; }

  // Waits for the client's first line, then for the stand-in to record its pid.
  pid_t following(Background& client) {
    EXPECT_NE(client.read_until("following\n", 10s).find("following\n"), std::string::npos) << pgod_.log();
    pid_t pid = 0;
    PgodHarness::wait_for(
        [&]() {
          const auto text = read_file(pgod_.standin_dir() + "/logs.pid");
          if (text.empty()) return false;
          pid = std::stoi(text);
          return process_alive(pid);
        },
        5s);
    return pid;
  }

  // A client of service a's `logs -f`, connecting to `host`; ssh's `extra` options.
  std::vector<std::string> follower_argv(Client client, const std::string& host = "127.0.0.1",
                                         const std::vector<std::string>& extra = {}) const {
    if (client == Client::kPgoctl)
      return {PGOCTL_BIN,        "-p", std::to_string(ssh_port_), "--known-hosts", known_hosts(), "-i", key_a_,
              host + ":a//logs", "-f"};
    auto argv = ssh_argv(key_a_, "a//logs -f", extra);
    for (auto& arg : argv)
      if (arg == "tester@127.0.0.1") arg = "tester@" + host;
    return argv;
  }

  // Starts a client of the quiet `logs -f`; once it printed the first line, the compose
  // process's pid (recorded afresh by the stand-in), or 0.
  struct Follower {
    std::unique_ptr<Background> client;
    pid_t compose = 0;
  };
  Follower follow(const std::vector<std::string>& argv) {
    std::filesystem::remove(pgod_.standin_dir() + "/logs.pid");
    Follower follower{spawn_background(argv)};
    follower.compose = following(*follower.client);
    return follower;
  }

  // Signals the client and reaps it; its wait status, or nullopt when it did not end in time (then
  // it is killed).
  static std::optional<int> end_client(Background& client, int signal_number) {
    kill(client.pid, signal_number);
    auto status = reap_within(client.pid, 5s);
    if (!status) client.stop(SIGKILL);
    client.pid = -1;
    return status;
  }

  // What pgoctl(1) says it exits with when it gets `signal_number` (INPUT AND SIGNALS); SIGKILL it
  // cannot catch, so the shell sees it killed by that signal.
  static void expect_pgoctl_status(std::optional<int> status, int signal_number) {
    ASSERT_TRUE(status) << "pgoctl did not end on SIG" << sigabbrev_np(signal_number);
    if (signal_number == SIGKILL) {
      EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << describe_status(status);
    } else {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 128 + signal_number)
          << describe_status(status) << ", documented: exit " << 128 + signal_number;
    }
  }

  // Every live process of service a's user but its worker: compose processes (and what they
  // started), which only this test program's pgod runs as that user. Each described.
  std::vector<std::string> processes_beside_worker_a() const {
    const pid_t worker = pgod_.worker_pid("a");
    const std::string uid = std::to_string(service_user_a().uid);
    std::vector<std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      const pid_t pid = std::stoi(name);
      if (pid == worker || !proc_status(pid)["Uid"].starts_with(uid + "\t")) continue;
      auto status = proc_status(pid);
      // A zombie has ended: nothing of it runs, it only waits for its parent (the workers of
      // earlier tests' pgod, reparented, wait for an init that may never reap them).
      if (status["State"].starts_with("Z")) continue;
      auto command = read_file("/proc/" + name + "/cmdline");
      std::replace(command.begin(), command.end(), '\0', ' ');
      found.push_back(name + " (" + status["Name"] + ", " + status["State"] + ", parent " + status["PPid"] +
                      "): " + command);
    }
    return found;
  }

  // The `logs --follow` calls the stand-in has recorded.
  int follows_started() const {
    std::istringstream calls(pgod_.calls());
    int count = 0;
    for (std::string line; std::getline(calls, line);)
      count += line.find(" logs ") != std::string::npos && line.find(" --follow ") != std::string::npos;
    return count;
  }

  // The gateway's open SSH connections, from /metrics; -1 when it cannot tell.
  int open_connections() const {
    const auto text = metrics();
    const std::string name = "\npgod_gateway_connections ";
    const auto at = text.find(name);
    if (at == std::string::npos) return -1;
    return std::atoi(text.c_str() + at + name.size());
  }

  // As the fixture's start(), with the gateway listening on `host` instead of loopback (pgod
  // binds one SSH address); /metrics stays on loopback.
  void start_on(const std::string& host, const std::vector<std::string>& extra) {
    ssh_port_ = free_port_on(host);
    metrics_port_ = free_loopback_port();
    pgod_.upstream("a").commit({{"ssh/dev.pub", read_file(key_a_ + ".pub")}});
    pgod_.write_config(PgodHarness::service_toml("a", service_user_a().name, pgod_.upstream("a").path()));
    std::vector<std::string> args = {"--gateway-program",
                                     programs_dir() + "/pgod-gateway",
                                     "-s",
                                     host + ":" + std::to_string(ssh_port_),
                                     "-m",
                                     "127.0.0.1:" + std::to_string(metrics_port_)};
    args.insert(args.end(), extra.begin(), extra.end());
    pgod_.start(args);
    ASSERT_TRUE(pgod_.wait_ready({"a"})) << pgod_.log();
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return run_process(ping_argv(host)).exit_code == 0; }, 20s))
        << pgod_.log();
  }

  // ssh's a//ping to `host`, from 127.0.0.1 (the host's own loopback address as the source).
  std::vector<std::string> ping_argv(const std::string& host) const {
    auto argv = ssh_argv(key_a_, "a//ping", {"-b", "127.0.0.1"});
    for (auto& arg : argv)
      if (arg == "tester@127.0.0.1") arg = "tester@" + host;
    return argv;
  }
};

TEST_F(VanishingClientTest, SshKilledOutrightEndsAQuietLogsFollow) {
  start();
  quiet_logs();
  auto client = spawn_background(ssh_argv(key_a_, "a//logs -f"));
  const pid_t compose = following(*client);
  ASSERT_GT(compose, 0);
  client->stop(SIGKILL);
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return !process_alive(compose); }, 10s))
      << "the compose process " << compose << " outlived its client\n"
      << pgod_.log();
}

// ssh and pgoctl, each ended by SIGINT (Ctrl-C), SIGTERM and SIGKILL while the command prints
// nothing: the compose process is gone at once (well within the default keepalive bound of a
// minute, so the gateway saw the close itself), and pgoctl exits as its manual page says.
class VanishingClientEndingTest : public VanishingClientTest, public ::testing::WithParamInterface<Ending> {};

TEST_P(VanishingClientEndingTest, TheComposeProcessOfAQuietLogsFollowEndsAtOnce) {
  const auto [client, signal_number] = GetParam();
  start();
  quiet_logs();
  auto follower = follow(follower_argv(client));
  ASSERT_GT(follower.compose, 0) << pgod_.log();
  const auto signalled = Clock::now();
  const auto status = end_client(*follower.client, signal_number);
  EXPECT_TRUE(status) << "the client did not end on SIG" << sigabbrev_np(signal_number);
  if (client == Client::kPgoctl) expect_pgoctl_status(status, signal_number);
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return !process_alive(follower.compose); }, 5s))
      << "the compose process " << follower.compose << " outlived its client by " << milliseconds_since(signalled)
      << " ms\n"
      << pgod_.log();
  EXPECT_EQ(processes_beside_worker_a(), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(EverySignal, VanishingClientEndingTest,
                         ::testing::Values(Ending{Client::kSsh, SIGINT}, Ending{Client::kSsh, SIGTERM},
                                           Ending{Client::kSsh, SIGKILL}, Ending{Client::kPgoctl, SIGINT},
                                           Ending{Client::kPgoctl, SIGTERM}, Ending{Client::kPgoctl, SIGKILL}),
                         ending_name);

// A client whose connection dies silently: it runs in a network namespace of the test's own whose
// packets are then all dropped, so the gateway gets no FIN and no reset, only silence. With
// keepalive probes every second and two unanswered ones allowed, the gateway drops the connection
// within a few seconds, the compose process goes with it (while the client itself still runs,
// stuck), and the gateway serves a fresh client.
class VanishingClientSilentTest : public VanishingClientTest, public ::testing::WithParamInterface<Client> {};

TEST_P(VanishingClientSilentTest, AConnectionThatDiesSilentlyEndsTheComposeProcessWithinTheKeepaliveBound) {
  TestNetns netns;
  start_on(netns.host_address(), {"--gateway-limits", "keepalive-interval=1s,keepalive-count=2"});
  quiet_logs();
  auto follower = follow(netns.inside(follower_argv(GetParam(), netns.host_address())));
  ASSERT_GT(follower.compose, 0) << pgod_.log();
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return open_connections() == 1; }, 3s)) << open_connections();

  netns.drop_everything();
  const auto dropped = Clock::now();
  // Keepalive after 1 s of silence, then every second; dropped after 2 unanswered probes: ~3 s.
  const bool gone = PgodHarness::wait_for([&]() { return !process_alive(follower.compose); }, 10s);
  const auto noticed_after = milliseconds_since(dropped);
  EXPECT_TRUE(gone) << "the compose process " << follower.compose << " outlived a dead connection by " << noticed_after
                    << " ms\n"
                    << pgod_.log();
  if (gone) std::cerr << "the compose process went " << noticed_after << " ms after the drop\n";
  EXPECT_TRUE(process_alive(follower.client->pid)) << "the client ended by itself: the connection did not die silently";
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return open_connections() == 0; }, 3s))
      << "the gateway still counts the dead connection: " << open_connections();
  EXPECT_EQ(processes_beside_worker_a(), std::vector<std::string>{});

  // A fresh client from 127.0.0.1 is served: its own quiet follow starts, and ends with it.
  auto fresh = follow(follower_argv(Client::kSsh, netns.host_address(), {"-b", "127.0.0.1"}));
  EXPECT_GT(fresh.compose, 0) << pgod_.log();
  EXPECT_TRUE(end_client(*fresh.client, SIGTERM));
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return !process_alive(fresh.compose); }, 5s)) << pgod_.log();
  follower.client->stop(SIGKILL);
}

INSTANTIATE_TEST_SUITE_P(BothClients, VanishingClientSilentTest, ::testing::Values(Client::kSsh, Client::kPgoctl),
                         [](const ::testing::TestParamInfo<Client>& info) {
                           return std::string(info.param == Client::kSsh ? "Ssh" : "Pgoctl");
                         });

// A hundred clients in a row, ssh and pgoctl taking turns, ended by SIGINT, SIGTERM and SIGKILL in
// turn, each as soon as its quiet `logs -f` runs: afterwards no compose process is left and no
// slot is held. With the gateway's commands per service and per key set to the worker's 16 slots
// for long reads, 16 new followers must all start (one slot held anywhere would refuse the 16th),
// and a 17th is refused.
TEST_F(VanishingClientTest, AHundredVanishingClientsLeaveNoProcessAndNoSlot) {
  constexpr int kClients = 100;
  constexpr int kLongReadSlots = 16;  // the worker's, kMaxLongReads in worker/service.cc
  start({"--gateway-limits", "max-commands-per-service=16,max-commands-per-key=16,max-connections-per-key=17"});
  quiet_logs();
  constexpr std::array kSignals = {SIGINT, SIGTERM, SIGKILL};
  std::vector<pid_t> composes;
  long slowest = 0;
  const auto began = Clock::now();
  for (int i = 0; i < kClients; ++i) {
    const Client client = i % 2 == 0 ? Client::kSsh : Client::kPgoctl;
    const int signal_number = kSignals[static_cast<std::size_t>(i) % kSignals.size()];
    auto follower = follow(follower_argv(client));
    ASSERT_GT(follower.compose, 0) << "client " << i << "\n" << pgod_.log();
    composes.push_back(follower.compose);
    const auto signalled = Clock::now();
    const auto status = end_client(*follower.client, signal_number);
    ASSERT_TRUE(status) << "client " << i << " did not end on SIG" << sigabbrev_np(signal_number);
    if (client == Client::kPgoctl) expect_pgoctl_status(status, signal_number);
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return !process_alive(follower.compose); }, 5s))
        << "client " << i << " (SIG" << sigabbrev_np(signal_number) << "): the compose process " << follower.compose
        << " outlived it\n"
        << pgod_.log();
    slowest = std::max(slowest, milliseconds_since(signalled));
  }
  std::cerr << kClients << " clients in " << milliseconds_since(began) << " ms; the slowest compose process went "
            << slowest << " ms after its client's signal\n";

  // Each client had a compose process of its own, and each is gone.
  EXPECT_EQ(std::set<pid_t>(composes.begin(), composes.end()).size(), composes.size());
  EXPECT_EQ(follows_started(), kClients);
  for (const pid_t pid : composes) EXPECT_FALSE(process_alive(pid)) << pid;
  EXPECT_EQ(processes_beside_worker_a(), std::vector<std::string>{});
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return open_connections() == 0; }, 5s)) << open_connections();

  // Every slot is free: as many followers as there are slots all start.
  std::vector<std::unique_ptr<Background>> followers;
  for (int i = 0; i < kLongReadSlots; ++i)
    followers.push_back(spawn_background(follower_argv(i % 2 == 0 ? Client::kSsh : Client::kPgoctl)));
  for (int i = 0; i < kLongReadSlots; ++i)
    EXPECT_NE(followers[static_cast<std::size_t>(i)]->read_until("following\n", 30s).find("following\n"),
              std::string::npos)
        << "follower " << i << " of " << kLongReadSlots << " did not start: a slot is still taken\n"
        << pgod_.log();
  std::vector<std::string> timed = {"/usr/bin/timeout", "20"};
  const auto seventeenth_argv = follower_argv(Client::kSsh);
  timed.insert(timed.end(), seventeenth_argv.begin(), seventeenth_argv.end());
  const auto seventeenth = run_process(timed);
  EXPECT_EQ(seventeenth.exit_code, 500 % 256) << seventeenth.err;
  EXPECT_NE(seventeenth.err.find("too many"), std::string::npos) << seventeenth.err;

  for (std::size_t i = 0; i < followers.size(); ++i) end_client(*followers[i], kSignals[i % kSignals.size()]);
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return processes_beside_worker_a().empty(); }, 5s))
      << testing::PrintToString(processes_beside_worker_a());
}

}  // namespace
}  // namespace pgod::test
