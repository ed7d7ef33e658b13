// Faults at the gateway, the one program that faces the network: it is killed with SIGKILL,
// flooded with connections that never authenticate, and sent a 1 MiB command line. pgod runs
// it as a child (its defaults: 100 unauthenticated connections at once, 30 s to log in, 16 KiB
// command lines) in front of real workers and the recording stand-in docker.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fault_support.h"
#include "git_fixture.h"
#include "pgod_harness.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::test::faults {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string hostname() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// A client left running in the background (an ssh control master), stopped by its PID.
struct Background {
  pid_t pid = -1;
  explicit Background(const std::vector<std::string>& argv) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Background() {
    if (pid > 0) stop_child(pid, 2s);
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
};

class GatewayFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = make_key(keys_.path(), "dev");
    for (const auto& name : {"a", "b"}) pgod_.upstream(name).commit({{"ssh/dev.pub", read_file(key_ + ".pub")}});
    pgod_.write_config(PgodHarness::service_toml("a", service_user_a().name, pgod_.upstream("a").path()) +
                       PgodHarness::service_toml("b", service_user_b().name, pgod_.upstream("b").path()));
    ports_ = {free_loopback_port(), free_loopback_port()};
    pgod_.start(ports_.pgod_args());
    ASSERT_TRUE(pgod_.wait_ready({"a", "b"})) << pgod_.log();
    for (const std::string name : {"a", "b"}) {
      const auto answers = [&]() { return ssh(ports_.ssh, key_, name + "//status").exit_code == 0; };
      ASSERT_TRUE(PgodHarness::wait_for(answers, 20s)) << pgod_.log();
    }
  }
  ProcessResult ctl(const std::string& target) const {
    return pgoctl(ports_.ssh, pgod_.root() + "/known_hosts", key_, target);
  }

  TempDir keys_;
  std::string key_;
  GatewayPorts ports_;
  PgodHarness pgod_;
};

// Fault 2: the gateway killed with SIGKILL, five times. pgod starts it again at once (a SIGKILL
// never advances the backoff), with the same host key, and the workers never notice.
TEST_F(GatewayFaultTest, AKilledGatewayIsBackAtOnceAndEveryWorkerKeepsItsPid) {
  // The first use records the host key; every later one checks it.
  const auto first = ctl("a//status");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const pid_t worker_a = pgod_.worker_pid("a"), worker_b = pgod_.worker_pid("b");
  std::vector<Millis> times;
  for (int round = 0; round < 5; ++round) {
    const pid_t old = gateway_pid(pgod_.log());
    const auto starts = gateway_starts(pgod_.log());
    ASSERT_GT(old, 0) << pgod_.log();
    const auto killed = Clock::now();
    ASSERT_EQ(kill(old, SIGKILL), 0);
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return has_exited(old); }, 5s));
    // Until the new gateway has the services' keys from the workers, logins are refused: retry.
    ProcessResult answer;
    const bool back = PgodHarness::wait_for(
        [&]() {
          answer = ctl("b//status");
          return answer.exit_code == 0;
        },
        20s);
    const auto took = std::chrono::duration_cast<Millis>(Clock::now() - killed);
    ASSERT_TRUE(back) << "pgoctl still fails " << took.count() << " ms after the kill: " << answer.err << pgod_.log();
    EXPECT_TRUE(answer.out.starts_with("state:       OK\n")) << answer.out;
    EXPECT_EQ(answer.err, "") << "the same host key: no warning from pgoctl's known_hosts check";
    EXPECT_LT(took, 5s) << "round " << round;
    times.push_back(took);
    const auto log = pgod_.log();
    EXPECT_EQ(gateway_starts(log), starts + 1) << log;
    EXPECT_NE(gateway_pid(log), old);
    EXPECT_EQ(pgod_.worker_pid("a"), worker_a) << "workers are not touched by the gateway's restart";
    EXPECT_EQ(pgod_.worker_pid("b"), worker_b);
  }
  EXPECT_NE(pgod_.log().find("gateway signal 9: restarting in 0.0 s"), std::string::npos) << pgod_.log();
  for (const auto& name : {"a", "b"}) EXPECT_EQ(pgod_.worker(name)->restarts, 0u) << name;
  EXPECT_EQ(pgod_.calls().find(" down"), std::string::npos);
  const auto figures = spread(times);
  RecordProperty("gateway_back_median_ms", std::to_string(figures.median_ms));
  RecordProperty("gateway_back_max_ms", std::to_string(figures.max_ms));
  std::printf("[ faults   ] gateway SIGKILLed %zu times: pgoctl answered again after median %.0f ms, max %.0f ms\n",
              times.size(), figures.median_ms, figures.max_ms);
}

// A client that goes away while its `rollback` waits behind a slow `git pull` (compose `up`
// takes 2 s): the worker runs the rollback job anyway, after the caller's side of the call is
// gone, and must neither crash nor write into memory the caller owned (the ASan build of the
// fault suite sees such a write).
TEST_F(GatewayFaultTest, AClientThatLeavesDuringARollbackLeavesTheWorkerSound) {
  const pid_t worker = pgod_.worker_pid("a");
  std::ofstream(pgod_.standin_dir() + "/up-sleep") << "2\n";
  const auto caller_line = [&](const std::string& words) {
    const auto logged = [&]() { return pgod_.log().find("(ssh/dev.pub): " + words + "\n") != std::string::npos; };
    return PgodHarness::wait_for(logged, 10s);
  };
  ProcessResult pull;
  std::thread puller([&]() { pull = ssh(ports_.ssh, key_, "a//git pull"); });
  EXPECT_TRUE(caller_line("git pull")) << pgod_.log();
  {
    Background rollback(ssh_argv(ports_.ssh, key_, "a//rollback deadbeef"));
    EXPECT_TRUE(caller_line("rollback deadbeef")) << pgod_.log();
    kill(rollback.pid, SIGKILL);  // gone before its job has even started
  }
  puller.join();
  EXPECT_EQ(pull.exit_code, 0) << pull.err;
  std::filesystem::remove(pgod_.standin_dir() + "/up-sleep");
  // Jobs run one at a time: once a second pull is answered, the rollback job has run.
  const auto again = ssh(ports_.ssh, key_, "a//git pull");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(again.out.starts_with("state:       OK\n")) << again.out << "the failed rollback pinned nothing";
  EXPECT_EQ(pgod_.worker_pid("a"), worker) << pgod_.log();
  EXPECT_EQ(pgod_.worker("a")->restarts, 0u);
  EXPECT_EQ(pgod_.log().find("AddressSanitizer"), std::string::npos) << pgod_.log();
}

// A loopback TCP client that never authenticates. Some send an SSH banner first, so the
// gateway starts a handshake for them that never completes.
struct SilentClient {
  UniqueFd fd;
  bool connected = false;
  bool sent_banner = false;
  bool served = false;  // the gateway sent its banner: it took the connection on
  bool closed = false;  // the gateway closed it
};

// Moves each client on: completes its connect, sends its banner, reads what the gateway says.
void advance(std::vector<SilentClient>& clients) {
  std::vector<pollfd> fds;
  for (auto& client : clients) {
    short events = client.closed ? 0 : POLLIN;
    if (!client.connected) events = POLLOUT;
    fds.push_back({client.closed ? -1 : client.fd.get(), events, 0});
  }
  if (poll(fds.data(), fds.size(), 100) <= 0) return;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    auto& client = clients[i];
    if (fds[i].revents == 0) continue;
    if (!client.connected) {
      int error = 0;
      socklen_t size = sizeof error;
      getsockopt(client.fd.get(), SOL_SOCKET, SO_ERROR, &error, &size);
      if (error != 0) {
        client.closed = true;  // refused before it was even accepted
        continue;
      }
      client.connected = true;
      if (i % 2 == 0) {
        static const std::string banner = "SSH-2.0-faults_silent\r\n";
        client.sent_banner =
            send(client.fd.get(), banner.data(), banner.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(banner.size());
      }
      continue;
    }
    char buffer[4096];
    const ssize_t got = recv(client.fd.get(), buffer, sizeof buffer, 0);
    if (got > 0) {
      client.served = client.served || std::string(buffer, static_cast<std::size_t>(got)).starts_with("SSH-2.0-");
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      client.closed = true;
    }
  }
}

struct Flood {
  std::size_t served = 0;  // held by the gateway, unauthenticated
  std::size_t closed = 0;  // turned away
  Millis took{};
};

// Connects every client at once and waits for the flood to settle. Each client is taken on (it
// gets the gateway's banner) or closed unserved. A few that sent nothing may never reach the
// gateway at all: answered with a SYN cookie while the accept queue overflowed, their final ACK
// was dropped and the kernel kept no trace of them. So the flood has settled once every client
// is accounted for, or nothing has changed for 3 s.
// The clients connect from `source`, another loopback address than the legitimate clients'.
Flood flood(std::vector<SilentClient>& clients, int port, const char* source) {
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source, &local.sin_addr);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const auto started = Clock::now();
  for (auto& client : clients) {
    client.fd.reset(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(client.fd) << std::strerror(errno);
    EXPECT_EQ(bind(client.fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local), 0) << std::strerror(errno);
    const int rc = connect(client.fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
    EXPECT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  Flood result;
  auto changed = Clock::now();
  const auto deadline = Clock::now() + 30s;
  for (;;) {
    advance(clients);
    std::size_t served = 0, closed = 0;
    for (const auto& client : clients) {
      served += client.served && !client.closed;
      closed += client.closed;
    }
    if (served != result.served || closed != result.closed) changed = Clock::now();
    result.served = served;
    result.closed = closed;
    if (served + closed == clients.size() || Clock::now() - changed > 3s || Clock::now() > deadline) break;
  }
  result.took = std::chrono::duration_cast<Millis>(Clock::now() - started);
  return result;
}

// Fault 7a: a thousand connections at once that never authenticate (half of them start an SSH
// handshake and stall). The gateway must stay the same process, hold no more of them than its
// limit, say in its log which limit it applied, and keep serving.
TEST_F(GatewayFaultTest, AThousandSilentConnectionsAtOnceAreBoundedAndItKeepsServing) {
  constexpr std::size_t kClients = 1000;
  constexpr std::size_t kPerSource = 64;  // the gateway's default cap of pending logins per source
  ASSERT_GE(raise_fd_limit(kClients + 256), kClients + 64) << "this test needs a descriptor per client";
  const pid_t gateway = gateway_pid(pgod_.log());
  ASSERT_GT(gateway, 0);

  // An authenticated client connected before the flood (an OpenSSH control master).
  const std::string control = pgod_.root() + "/master.sock";
  Background master(ssh_argv(ports_.ssh, key_, "", {"-M", "-S", control, "-N"}));
  ASSERT_GT(master.pid, 0);
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return std::filesystem::exists(control); }, 20s));
  const auto through_master = [&](const std::string& command) {
    return ssh(ports_.ssh, key_, command, {"-S", control});
  };
  ASSERT_EQ(through_master("a//ping").exit_code, 0);
  const std::size_t fds_before = fd_count(gateway);

  std::vector<SilentClient> clients(kClients);
  const auto [served, closed, flood_took] = flood(clients, ports_.ssh, "127.0.0.2");
  EXPECT_LE(served, kPerSource) << "one source's pending logins are bounded";
  // The rest: turned away by the gateway at once, or lost in the kernel's SYN cookies.
  EXPECT_GT(closed, 0u) << "the gateway turned some away at once";
  // What the gateway holds, seen from its side: two descriptors per connection (the socket and
  // the dup it watches), for at most the limit (plus a few for anything else it may open).
  constexpr std::size_t kSlack = 8;
  EXPECT_LE(fd_count(gateway), fds_before + 2 * kPerSource + kSlack);

  // During the flood: the same gateway, and it serves the authenticated client, all the way to
  // the worker.
  EXPECT_FALSE(has_exited(gateway));
  EXPECT_EQ(gateway_pid(pgod_.log()), gateway) << "not restarted";
  const auto pong = through_master("a//ping");
  EXPECT_EQ(pong.exit_code, 0) << pong.err;
  EXPECT_EQ(pong.out, "pong! - " + hostname() + "\n");
  const auto status = through_master("b//status");
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(status.out.starts_with("state:       OK\n")) << status.out;
  // A new login from another address is served during the flood, at once: the flood's source
  // holds no more than its share, and is refused once it has earned its penalty.
  const auto during_started = Clock::now();
  const auto fresh = ssh(ports_.ssh, key_, "a//ping");
  const auto fresh_took = std::chrono::duration_cast<Millis>(Clock::now() - during_started);
  EXPECT_EQ(fresh.exit_code, 0) << fresh.err;
  EXPECT_LT(fresh_took, 10s) << "a new login during the flood neither hangs nor waits for a slot";
  const auto log = pgod_.log();
  EXPECT_NE(log.find("logins pending from 127.0.0.2/32 (see --per-source-max-unauthenticated)"), std::string::npos)
      << log;
  EXPECT_NE(log.find("127.0.0.2/32: refused for"), std::string::npos) << log;
  EXPECT_EQ(ssh(ports_.ssh, key_, "a//ping", {"-b", "127.0.0.2"}).exit_code, 255) << "the flood's source is refused";

  // After: the silent clients go away, and a new login works at once.
  clients.clear();
  const auto after_started = Clock::now();
  ProcessResult after;
  EXPECT_TRUE(PgodHarness::wait_for(
      [&]() {
        after = ssh(ports_.ssh, key_, "a//ping");
        return after.exit_code == 0;
      },
      20s))
      << after.err;
  const auto after_took = std::chrono::duration_cast<Millis>(Clock::now() - after_started);
  EXPECT_EQ(after.out, "pong! - " + hostname() + "\n");
  // Most connections end as soon as their client closes. A client whose handshake the kernel
  // finished with a SYN cookie after the flood may have vanished without a FIN reaching the
  // gateway (its FIN was dropped while the accept queue was full): nothing can tell such a peer
  // from a slow one, so it is held until the 30 s login time-out, and no longer.
  const auto release_started = Clock::now();
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return fd_count(gateway) <= fds_before + kSlack; }, 40s))
      << "the gateway let go of every connection within its login time-out: " << fd_count(gateway) << " descriptors, "
      << fds_before << " before";
  const auto release_took = std::chrono::duration_cast<Millis>(Clock::now() - release_started);
  std::printf(
      "[ faults   ] %zu silent clients settled in %lld ms: %zu held (limit %zu), %zu closed unserved, %zu "
      "never reached it; a new login during the flood: exit %d after %lld ms; after: ping in %lld ms, every "
      "connection let go in %lld ms\n",
      kClients, static_cast<long long>(flood_took.count()), served, kPerSource, closed, kClients - served - closed,
      fresh.exit_code, static_cast<long long>(fresh_took.count()), static_cast<long long>(after_took.count()),
      static_cast<long long>(release_took.count()));
}

// Fault 7b: command lines over the gateway's limit (16 KiB under pgod) and over libssh's packet
// size limit (256 KiB): the first is refused with 400 and the words of the limit, the second
// ends the connection before any of it is parsed. Either way the log says which limit applied,
// the gateway stays the same process, and nothing reaches the worker.
TEST_F(GatewayFaultTest, OverlongCommandLinesAreRefusedAndLogged) {
  const pid_t gateway = gateway_pid(pgod_.log());
  ASSERT_GT(gateway, 0);
  // In pieces: one argument may not exceed 128 KiB; ssh joins them with spaces.
  const auto command_line = [&](std::size_t bytes) {
    std::vector<std::string> argv = {"/usr/bin/timeout", "60"};
    const auto client = ssh_argv(ports_.ssh, key_, "a//exec");
    argv.insert(argv.end(), client.begin(), client.end());
    argv.insert(argv.end(), {"web", "echo"});
    for (std::size_t length = 16; length < bytes; length += 64 * 1024 + 1)
      argv.push_back(std::string(std::min<std::size_t>(64 * 1024, bytes - length), 'x'));
    return run_process(argv);
  };

  const auto long_line = command_line(200 * 1024);
  EXPECT_EQ(long_line.exit_code, 400 % 256) << long_line.err;
  EXPECT_TRUE(long_line.err.starts_with("Bad Request: command line too long: ")) << long_line.err;
  EXPECT_NE(long_line.err.find(" bytes, the limit is 16384\n"), std::string::npos) << long_line.err;

  const auto huge = command_line(1 << 20);
  EXPECT_EQ(huge.exit_code, 255) << huge.err;
  std::printf("[ faults   ] a 200 KiB command line: exit %d, \"%s\"; 1 MiB: exit %d, \"%s\"\n", long_line.exit_code,
              long_line.err.substr(0, long_line.err.find('\n')).c_str(), huge.exit_code,
              huge.err.substr(0, huge.err.find('\n')).c_str());

  EXPECT_FALSE(has_exited(gateway));
  EXPECT_EQ(gateway_pid(pgod_.log()), gateway) << "not restarted";
  const auto log = pgod_.log();
  EXPECT_NE(log.find(" bytes refused (see --max-command-length)"), std::string::npos) << log;
  const auto dropped = log.find("(tester): connection dropped: read_packet(): Packet len too high");
  EXPECT_NE(dropped, std::string::npos) << log;
  if (dropped != std::string::npos) {
    const auto line = log.rfind('\n', dropped) + 1;
    std::printf("[ faults   ] the gateway's log: %s\n", log.substr(line, log.find('\n', dropped) - line).c_str());
  }
  const auto again = ssh(ports_.ssh, key_, "a//ping");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(log.find("(ssh/dev.pub): exec"), std::string::npos) << "nothing reached the worker";
  EXPECT_EQ(pgod_.calls().find(" exec "), std::string::npos) << "nor docker";
}

}  // namespace
}  // namespace pgod::test::faults
