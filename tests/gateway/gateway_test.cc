// The gateway end to end: pgod (as root, real test users, the stand-in docker) runs the real
// pgod-gateway on loopback ports, and OpenSSH's ssh and pgoctl talk to it with real keys made by
// ssh-keygen. Every answer is checked with its exact words and exit status.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "command_grammar.h"
#include "gateway_fixture.h"
#include "pgod_harness.h"
#include "process.h"
#include "status.h"
#include "unique_fd.h"

namespace pgod::test {
namespace {

// A TCP relay between ssh clients and the gateway that can stop reading what the gateway sends.
// Its sockets towards the gateway have a tiny receive buffer, so once it stalls the gateway
// sees clients whose SSH windows are open but whose sockets take nothing more: whatever the
// gateway then accepts from the worker stays in its own memory.
class StallingRelay {
 public:
  explicit StallingRelay(int gateway_port) : gateway_port_(gateway_port) {
    listener_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address = loopback(0);
    socklen_t length = sizeof address;
    if (!listener_ || bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listener_.get(), 16) != 0 ||
        getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      throw std::runtime_error(std::string("relay: ") + strerror(errno));
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this]() { run(); });
  }
  ~StallingRelay() {
    stopping_ = true;
    thread_.join();
  }
  StallingRelay(const StallingRelay&) = delete;
  StallingRelay& operator=(const StallingRelay&) = delete;

  int port() const { return port_; }
  void stall() { stalled_ = true; }

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
  }
  struct Pair {
    UniqueFd client, gateway;
  };
  static bool relay(int from, int to) {
    char buffer[4096];
    const ssize_t got = read(from, buffer, sizeof buffer);
    if (got <= 0) return false;
    for (ssize_t sent = 0; sent < got;) {
      const ssize_t put = write(to, buffer + sent, static_cast<std::size_t>(got - sent));
      if (put <= 0) return false;
      sent += put;
    }
    return true;
  }
  void run() {
    std::vector<std::unique_ptr<Pair>> pairs;
    while (!stopping_) {
      std::vector<pollfd> fds{{listener_.get(), POLLIN, 0}};
      for (const auto& pair : pairs) {
        fds.push_back({pair->client.get(), POLLIN, 0});
        fds.push_back({pair->gateway.get(), static_cast<short>(stalled_ ? 0 : POLLIN), 0});
      }
      if (poll(fds.data(), fds.size(), 100) <= 0) continue;
      const std::size_t polled = pairs.size();  // a pair accepted below has no entry in fds yet
      if (fds[0].revents & POLLIN) {
        auto pair = std::make_unique<Pair>();
        pair->client.reset(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        pair->gateway.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const int small = 4096;
        setsockopt(pair->gateway.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        sockaddr_in address = loopback(gateway_port_);
        if (pair->client && connect(pair->gateway.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0)
          pairs.push_back(std::move(pair));
      }
      for (std::size_t i = 0; i < polled; ++i) {
        const auto& from_client = fds[1 + 2 * i];
        const auto& from_gateway = fds[2 + 2 * i];
        if ((from_client.revents & (POLLIN | POLLHUP)) && !relay(pairs[i]->client.get(), pairs[i]->gateway.get()))
          pairs[i]->gateway.reset();  // the client left: so does its connection to the gateway
        if ((from_gateway.revents & (POLLIN | POLLHUP)) && pairs[i]->gateway &&
            !relay(pairs[i]->gateway.get(), pairs[i]->client.get()))
          pairs[i]->client.reset();
      }
      std::erase_if(pairs, [](const auto& pair) { return !pair->client || !pair->gateway; });
    }
  }

  int gateway_port_;
  int port_ = 0;
  UniqueFd listener_;
  std::atomic<bool> stalled_{false}, stopping_{false};
  std::thread thread_;
};

TEST_F(GatewayTest, PingAnswersPongWithTheHostName) {
  start();
  auto pong = ssh(key_a_, "a//ping");
  EXPECT_EQ(pong.exit_code, 0) << pong.err;
  EXPECT_EQ(pong.out, "pong! - " + hostname() + "\n");
  EXPECT_EQ(pong.err, "");
  // ping never reaches the worker, let alone docker: it answers while a's worker is frozen.
  EXPECT_EQ(pgod_.calls().find(" ping"), std::string::npos);
  const pid_t worker = pgod_.worker_pid("a");
  ASSERT_EQ(kill(worker, SIGSTOP), 0);
  const auto asked = std::chrono::steady_clock::now();
  auto frozen = ssh(key_a_, "a//ping");
  const auto took = std::chrono::steady_clock::now() - asked;
  ASSERT_EQ(kill(worker, SIGCONT), 0);
  EXPECT_EQ(frozen.exit_code, 0) << frozen.err;
  EXPECT_EQ(frozen.out, "pong! - " + hostname() + "\n");
  EXPECT_LT(took, 2s);
}

TEST_F(GatewayTest, CommandsRunOnTheWorkerAndComposeExitCodesPassThrough) {
  start();
  auto ps = ssh(key_a_, "a//ps");
  EXPECT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_EQ(ps.out, "NAME          STATUS\nstandin-web-1 Up\n");
  std::ofstream(pgod_.standin_dir() + "/ps-exit") << "3\n";
  auto failing = ssh(key_b_, "b//ps");  // an RSA key, the other service
  EXPECT_EQ(failing.exit_code, 3) << failing.err;
  EXPECT_EQ(failing.out, "NAME          STATUS\nstandin-web-1 Up\n");
  // Words arrive as the shell-like grammar splits them, quotes and all.
  auto exec = ssh(key_a_, "a//exec web sh -c \"echo hi there\"");
  EXPECT_EQ(exec.exit_code, 0) << exec.err;
  EXPECT_NE(exec.out.find("exec: "), std::string::npos) << exec.out;
  EXPECT_NE(pgod_.calls().find("sh -c echo hi there"), std::string::npos) << pgod_.calls();
}

TEST_F(GatewayTest, AKeyOfOneServiceIsRefusedForAnotherWith401) {
  start();
  auto refused = ssh(key_a_, "b//ps");
  EXPECT_EQ(refused.exit_code, 401 % 256);
  EXPECT_EQ(refused.err, "Unauthorized: Key for user \"tester\" does not match any for name b\n");
  EXPECT_EQ(refused.out, "");
  // (The health gate's own `ps -a -q` at the first deploy is not the caller's.)
  EXPECT_EQ(pgod_.calls().find(" ps |"), std::string::npos) << "nothing ran";
}

// Every command, as someone holding service a's key would try it on b.
std::vector<std::string> every_command_for(const std::string& service) {
  std::vector<std::string> lines;
  for (const auto& verb : all_verbs()) {
    std::string line = service + "//" + std::string(verb.words);
    if (verb.verb == Verb::kExec) line += " app id";
    if (verb.verb == Verb::kRollback) line += " 0123456789abcdef0123456789abcdef01234567";
    lines.push_back(line);
  }
  return lines;
}

TEST_F(GatewayTest, AKeyOfOneServiceRunsNothingOnAnother) {
  start();
  const pid_t worker_b = pgod_.worker_pid("b");
  const auto calls_before = pgod_.calls();
  for (const auto& line : every_command_for("b")) {
    auto refused = ssh(key_a_, line);
    EXPECT_EQ(refused.exit_code, 401 % 256) << line;
    EXPECT_EQ(refused.err, "Unauthorized: Key for user \"tester\" does not match any for name b\n") << line;
    EXPECT_EQ(refused.out, "") << line;
  }
  EXPECT_EQ(pgod_.calls(), calls_before) << "nothing ran";
  EXPECT_EQ(pgod_.worker_pid("b"), worker_b) << "b's worker was not restarted";
}

TEST_F(GatewayTest, AKeyNoServiceListsIsRefusedAtAuthentication) {
  start();
  auto refused = ssh(key_stranger_, "a//ping");
  EXPECT_EQ(refused.exit_code, 255);
  EXPECT_NE(refused.err.find("Permission denied (publickey)"), std::string::npos) << refused.err;
}

TEST_F(GatewayTest, ErrorsUseTheOriginalsWordsAndCodes) {
  start();
  auto missing = ssh(key_a_, "nosuch//ps");
  EXPECT_EQ(missing.exit_code, 404 % 256);
  EXPECT_EQ(missing.err, "Not Found: No service found with name \"nosuch\"\n");
  auto unknown = ssh(key_a_, "a//frobnicate");
  EXPECT_EQ(unknown.exit_code, 406 % 256);
  EXPECT_EQ(unknown.err, "Not Acceptable: Command \"frobnicate\" does not match any route\n") << unknown.err;
  auto unparsable = ssh(key_a_, "a//exec web sh -c \"unterminated");
  EXPECT_EQ(unparsable.exit_code, 400 % 256);
  EXPECT_EQ(unparsable.err, "Bad Request: unterminated \" quote\n") << unparsable.err;
  auto no_slashes = ssh(key_a_, "just-words");
  EXPECT_EQ(no_slashes.exit_code, 400 % 256);
  EXPECT_EQ(no_slashes.err, "Bad Request: expected [host:]service//command, got \"just-words\"\n") << no_slashes.err;
  auto refused_argument = ssh(key_a_, "a//exec --privileged web sh");
  EXPECT_EQ(refused_argument.exit_code, 406 % 256);
  EXPECT_EQ(refused_argument.err,
            "Not Acceptable: flag \"--privileged\" is not allowed for exec (privileged containers are refused) "
            "(allowed: -T/--no-TTY, -d/--detach, -e/--env, -w/--workdir, -u/--user, --index)\n")
      << refused_argument.err;
  // No command at all asks for a shell: a usage message, not a shell.
  auto shell = ssh(key_a_, "");
  EXPECT_EQ(shell.exit_code, 400 % 256);
  EXPECT_NE(shell.err.find("no shell here"), std::string::npos) << shell.err;
  // `ssh -t` asks for a terminal first: accepted and ignored.
  auto with_tty = ssh(key_a_, "a//ping", {"-tt"});
  EXPECT_EQ(with_tty.exit_code, 0) << with_tty.err;
}

TEST_F(GatewayTest, AWorkerThatDiesMidCommandIsA500) {
  start();
  const std::string errors = pgod_.root() + "/follower.err";
  std::vector<std::string> shell = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>" + errors};
  for (const auto& word : ssh_argv(key_b_, "b//logs -f")) shell.push_back(word);
  auto follower = spawn_background(shell);
  ASSERT_NE(follower->read_until("line 2\n", 10s).find("line 2\n"), std::string::npos) << pgod_.log();
  const pid_t worker = pgod_.worker_pid("b");
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  int status = 0;
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return waitpid(follower->pid, &status, WNOHANG) == follower->pid; }, 10s));
  follower->pid = -1;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 500 % 256);
  // What failed, in words; the RPC's own error stays in the gateway's log.
  EXPECT_EQ(read_file(errors),
            "Internal Server Error: the worker of b did not answer (it may be restarting); try again\n");
  EXPECT_NE(pgod_.log().find("[b] the worker did not answer: "), std::string::npos) << pgod_.log();
  // The restarted worker serves the next command: the gateway connects again.
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_b_, "b//ps").exit_code == 0; }, 10s)) << pgod_.log();
}

TEST_F(GatewayTest, AWorkerThatIsNotRunningIsA500AtOnce) {
  start();
  // Ended by SIGTERM (not SIGKILL) right after each start, b's worker backs off 0, 2, 4, then
  // 8 s: long enough for the gateway's view of the workers (asked every 2 s) to catch up.
  pid_t worker = pgod_.worker_pid("b");
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(kill(worker, SIGTERM), 0);
    if (i == 3) break;
    const pid_t ended = worker;
    ASSERT_TRUE(PgodHarness::wait_for(
        [&]() {
          worker = pgod_.worker_pid("b");
          return worker != 0 && worker != ended;
        },
        10s))
        << pgod_.log();
  }
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() {
        auto row = pgod_.worker("b");
        return row && row->state == "backing-off";
      },
      5s))
      << pgod_.log();
  std::this_thread::sleep_for(2500ms);
  const auto asked = std::chrono::steady_clock::now();
  auto refused = ssh(key_b_, "b//ps");
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1500ms) << "answered at once, not after the backoff";
  EXPECT_EQ(refused.exit_code, 500 % 256) << refused.err;
  EXPECT_EQ(refused.err, "Internal Server Error: the worker of b is not running (backing-off); try again later\n");
  EXPECT_EQ(pgod_.worker("b")->state, "backing-off") << "still backing off when answered";
  EXPECT_EQ(ssh(key_a_, "a//ps").exit_code, 0) << "the other service is served";
}

TEST_F(GatewayTest, LogsFollowStreamsAndEndsTheComposeProcessWhenTheClientGoesAway) {
  start();
  auto follower = spawn_background(ssh_argv(key_a_, "a//logs -f"));
  const auto first = follower->read_until("line 3\n", 10s);
  ASSERT_NE(first.find("line 3\n"), std::string::npos) << first << pgod_.log();
  // The output streams: more keeps coming while the command runs.
  const auto more = follower->read_until("line 6\n", 10s);
  EXPECT_NE(more.find("line 6\n"), std::string::npos) << more;
  const std::string pid_text = read_file(pgod_.standin_dir() + "/logs.pid");
  ASSERT_FALSE(pid_text.empty());
  const pid_t compose = std::stoi(pid_text);
  ASSERT_TRUE(process_alive(compose));
  follower->stop(SIGTERM);  // the client disconnects, as Ctrl-C does to ssh
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return !process_alive(compose); }, 10s))
      << "the compose process " << compose << " outlived its client\n"
      << pgod_.log();
}

// The worker's answer can arrive while its last output still waits for the client's window:
// every byte must go out before the exit status.
TEST_F(GatewayTest, AllOutputPrecedesTheExitStatusEvenForASlowReader) {
  start();
  constexpr std::size_t kBytes = 2'500'000;  // more than OpenSSH's 2 MiB window
  std::ofstream(pgod_.standin_dir() + "/logs-bytes") << kBytes << "\n";
  for (int round = 0; round < 3; ++round) {
    auto reader = spawn_background(ssh_argv(key_a_, "a//logs"));
    std::this_thread::sleep_for(1500ms);  // the window fills; the worker finishes meanwhile
    std::size_t total = 0;
    char buffer[65536];
    ssize_t got;
    while ((got = read(reader->out.get(), buffer, sizeof buffer)) > 0) total += static_cast<std::size_t>(got);
    int status = 0;
    ASSERT_EQ(waitpid(reader->pid, &status, 0), reader->pid);
    reader->pid = -1;
    EXPECT_EQ(total, kBytes) << "round " << round;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round;
  }
  std::filesystem::remove(pgod_.standin_dir() + "/logs-bytes");
}

// A streamed stdout goes from the command's pipe straight into the gateway
// (OutputSink.stdoutPipe): every byte arrives, and the worker reads none of them.
TEST_F(GatewayTest, AStreamedStdoutIsReadByTheGatewayNotCopiedThroughTheWorker) {
  start();
  constexpr long kBytes = 32L << 20;
  std::ofstream(pgod_.standin_dir() + "/logs-bytes") << kBytes << "\n";
  const pid_t gateway = gateway_pid();
  const pid_t worker = pgod_.worker_pid("a");
  ASSERT_GT(gateway, 0);
  ASSERT_GT(worker, 0);
  // The gateway's reader threads exit at EOF, and it has no children: all of it.
  const long gateway_before = bytes_read(gateway), worker_before = bytes_read_by_threads(worker);
  ASSERT_GE(gateway_before, 0);
  ASSERT_GE(worker_before, 0);
  auto logs = ssh(key_a_, "a//logs");
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(static_cast<long>(logs.out.size()), kBytes);
  EXPECT_EQ(logs.out.find_first_not_of('\0'), std::string::npos) << "the bytes came through changed";
  const long worker_read = bytes_read_by_threads(worker) - worker_before;
  EXPECT_LT(worker_read, 1L << 20) << "the worker read " << worker_read << " bytes of the stream itself";
  EXPECT_GE(bytes_read(gateway) - gateway_before, kBytes);
  std::filesystem::remove(pgod_.standin_dir() + "/logs-bytes");
}

// Clients that keep their SSH windows open but stop reading their sockets (a hostile client
// can announce a window of 4 GiB): the gateway hands libssh a slice at a time and only once
// the socket took the last one, so it holds little, and the worker's producer is held back.
TEST_F(GatewayTest, ClientsThatStopReadingTheirSocketsCostTheGatewayLittleAndHoldTheProducerBack) {
  start();
  const pid_t gateway = gateway_pid();
  ASSERT_GT(gateway, 0);
  std::ofstream(pgod_.standin_dir() + "/logs-flood") << "";
  StallingRelay relay(ssh_port_);
  const long gateway_before = rss_kib(gateway);
  // Eight sessions on one connection: their windows (2 MiB each in OpenSSH) add up to far
  // more than the kernel's socket buffers can hold.
  const std::string control = pgod_.root() + "/mux";
  auto master_argv = ssh_argv(key_a_, "", {"-M", "-S", control, "-N"});
  master_argv[4] = std::to_string(relay.port());
  auto master = spawn_background(master_argv);
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return std::filesystem::exists(control); }, 10s));
  std::vector<std::unique_ptr<Background>> readers;
  for (int i = 0; i < 8; ++i) readers.push_back(spawn_background(ssh_argv(key_a_, "a//logs -f", {"-S", control})));
  // The ssh clients' output is read all along, so they keep their windows open: only the
  // relay stops. Every stream really flows before it does.
  std::vector<std::atomic<std::size_t>> received(readers.size());
  std::atomic<bool> draining{true};
  std::thread drain([&]() {
    while (draining)
      for (std::size_t i = 0; i < readers.size(); ++i) received[i] += readers[i]->read_bytes(1, 10ms);
  });
  const bool flowing = PgodHarness::wait_for(
      [&]() {
        return std::all_of(received.begin(), received.end(), [](const auto& bytes) { return bytes >= 256 * 1024; });
      },
      10s);
  relay.stall();
  EXPECT_TRUE(flowing) << [&]() {
    std::string counts;
    for (const auto& bytes : received) counts += std::to_string(bytes) + " ";
    return counts;
  }() << pgod_.log();
  std::this_thread::sleep_for(2s);
  pid_t producer = 0;
  std::ifstream(pgod_.standin_dir() + "/logs.pid") >> producer;
  ASSERT_GT(producer, 0);
  const long written_before = bytes_written(producer);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(bytes_written(producer), written_before) << "the producer is blocked";
  const long gateway_after = rss_kib(gateway);
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer every freed buffer of the streams that flowed sits in its quarantine
  // and counts as resident: the bound is checked by the release build's run of this test.
  (void)gateway_before;
  (void)gateway_after;
#else
  // Per stream the gateway holds one read of the command's stdout pipe (256 KiB; before the
  // worker handed the pipe over, its Cap'n Proto stream window and up to two messages of
  // 256 KiB: measured 4.6–4.8 MiB for eight). Buffered too, the eight open SSH windows would add
  // 16 MiB more (measured 15–17 MiB before the gateway held back).
  EXPECT_LT(gateway_after - gateway_before, 6 * 1024) << gateway_before << " → " << gateway_after << " KiB";
#endif
  // Everyone else is served at once meanwhile.
  const auto started = std::chrono::steady_clock::now();
  auto pong = ssh(key_b_, "b//ps");
  EXPECT_EQ(pong.exit_code, 0) << pong.err;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  draining = false;
  drain.join();
  readers.clear();
  master->stop();
  std::filesystem::remove(pgod_.standin_dir() + "/logs-flood");
}

TEST_F(GatewayTest, AStalledReaderIsBoundedAndDelaysNoOneElse) {
  start();
  std::ofstream(pgod_.standin_dir() + "/logs-flood") << "";
  auto stalled = spawn_background(ssh_argv(key_a_, "a//logs -f"));
  // It reads a little, then stops reading: the stream must stop at the windows, not pile up.
  ASSERT_GE(stalled->read_bytes(64 * 1024, 10s), 64u * 1024) << pgod_.log();
  std::this_thread::sleep_for(2s);
  const pid_t gateway = gateway_pid();
  const pid_t worker = pgod_.worker_pid("a");
  ASSERT_GT(gateway, 0);
  pid_t producer = 0;
  std::ifstream(pgod_.standin_dir() + "/logs.pid") >> producer;
  ASSERT_GT(producer, 0);
  const long written_before = bytes_written(producer);
  const long gateway_before = rss_kib(gateway), worker_before = rss_kib(worker);
  // Meanwhile everyone else is served at once.
  for (int i = 0; i < 5; ++i) {
    const auto started = std::chrono::steady_clock::now();
    auto pong = ssh(key_b_, "b//ping");
    EXPECT_EQ(pong.exit_code, 0) << pong.err;
    auto ps = ssh(key_a_, "a//ps");
    EXPECT_EQ(ps.exit_code, 0) << ps.err;
    EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  }
  std::this_thread::sleep_for(2s);
  // `cat /dev/zero` writes gigabytes a second when nothing holds it back.
  EXPECT_EQ(bytes_written(producer), written_before) << "the producer is blocked";
  const long gateway_after = rss_kib(gateway), worker_after = rss_kib(worker);
  EXPECT_LT(gateway_after - gateway_before, 8 * 1024) << gateway_before << " → " << gateway_after << " KiB";
  EXPECT_LT(worker_after - worker_before, 8 * 1024) << worker_before << " → " << worker_after << " KiB";
#if defined(__SANITIZE_ADDRESS__)
  // ASan's shadow and quarantine add tens of MiB to any process: the growth above is the bound.
  constexpr long kGatewayCeilingKib = 128 * 1024;
#else
  constexpr long kGatewayCeilingKib = 64 * 1024;
#endif
  EXPECT_LT(gateway_after, kGatewayCeilingKib) << "the gateway holds " << gateway_after << " KiB";
  stalled->stop(SIGKILL);
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return !process_alive(producer); }, 10s))
      << "the compose process ends with its client";
  std::filesystem::remove(pgod_.standin_dir() + "/logs-flood");
}

TEST_F(GatewayTest, SixtyFourConcurrentSessionsSucceedWhileALogsFollowRuns) {
  start();
  auto follower = spawn_background(ssh_argv(key_a_, "a//logs -f"));
  std::string seen = follower->read_until("line 2\n", 10s);
  ASSERT_NE(seen.find("line 2\n"), std::string::npos) << pgod_.log();
  // Slow enough that the 32 `ps` overlap beyond the worker's 16 compose processes at once:
  // the rest wait their turn instead of being refused.
  std::ofstream(pgod_.standin_dir() + "/ps-delay") << "0.5\n";
  std::vector<std::thread> threads;
  std::vector<ProcessResult> results(64);
  const auto burst_started = std::chrono::steady_clock::now();
  // The follower's output is read during the burst, to see that it kept flowing meanwhile.
  std::atomic<bool> bursting{true};
  std::string during;
  std::thread watcher([&]() {
    while (bursting) during += follower->read_until("\n", 100ms);
  });
  for (int i = 0; i < 64; ++i) {
    threads.emplace_back([&, i]() { results[i] = i % 2 == 0 ? ssh(key_a_, "a//ping") : ssh(key_b_, "b//ps"); });
  }
  for (auto& thread : threads) thread.join();
  const auto burst = std::chrono::duration<double>(std::chrono::steady_clock::now() - burst_started).count();
  bursting = false;
  watcher.join();
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(results[i].exit_code, 0) << i << ": " << results[i].err;
    EXPECT_FALSE(results[i].out.empty()) << i;
  }
  std::filesystem::remove(pgod_.standin_dir() + "/ps-delay");
  // The follower kept streaming during the burst: the stand-in writes a line every 50 ms, and
  // at least half of those written meanwhile came through before it ended.
  const auto last_line = [](const std::string& text) {
    const auto at = text.rfind("line ");
    return at == std::string::npos ? 0 : std::atoi(text.c_str() + at + 5);
  };
  const int expected = last_line(seen) + static_cast<int>(burst / 0.05 / 2);
  EXPECT_GE(last_line(during), expected) << "after " << burst << " s:\n" << during;
  EXPECT_TRUE(process_alive(follower->pid)) << "the follower is still running";
}

// The limits, on a gateway run on its own (as under its own systemd unit) beside pgod.
TEST_F(GatewayTest, LimitsHoldAndAreLogged) {
  start();
  const int port = free_loopback_port();
  const std::string host_key = make_key(pgod_.root(), "standalone-host-key");
  const std::string log_path = pgod_.root() + "/standalone-gateway.log";
  auto direct = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {programs_dir() + "/pgod-gateway",
                                     "-s",
                                     "127.0.0.1:" + std::to_string(port),
                                     "-m",
                                     "127.0.0.1:" + std::to_string(free_loopback_port()),
                                     "--hooks",
                                     "127.0.0.1:" + std::to_string(free_loopback_port()),
                                     "--host-key",
                                     host_key,
                                     "--rundir",
                                     pgod_.rundir(),
                                     "--user",
                                     gateway_user().name};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::vector<std::string> shell = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>" + log_path};
    shell.insert(shell.end(), argv.begin(), argv.end());
    return spawn_background(shell);
  };
  // The silent clients' time-outs must not get 127.0.0.1 refused: a 1 s penalty each.
  auto gateway = direct({"--login-timeout", "1s", "--max-unauthenticated", "2", "--max-command-length", "100",
                         "--max-commands-per-service", "1", "--max-sessions", "1", "--penalty-timeout", "1s"});
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return read_file(log_path).find("ready: ssh on") != std::string::npos; }))
      << read_file(log_path);
  const auto saved_port = ssh_port_;
  ssh_port_ = port;
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_a_, "a//ping").exit_code == 0; }, 10s))
      << read_file(log_path);

  ASSERT_NO_FATAL_FAILURE(expect_two_unauthenticated_slots_and_a_1s_login_timeout(port));

  expect_command_length_100_and_one_command_per_service();

  ASSERT_NO_FATAL_FAILURE(expect_one_session_per_connection());

  const auto log = read_file(log_path);
  EXPECT_NE(log.find("see --max-sessions"), std::string::npos) << log;
  EXPECT_NE(log.find("logins pending (see --max-unauthenticated)"), std::string::npos) << log;
  EXPECT_NE(log.find("login time-out (see --login-timeout)"), std::string::npos) << log;
  EXPECT_NE(log.find("see --max-command-length"), std::string::npos) << log;
  ssh_port_ = saved_port;
  gateway->stop();
}

// The same limits for the gateway that pgod starts itself (the quick start's way of running).
TEST_F(GatewayTest, LimitsGivenToPgodReachTheGatewayItStarts) {
  start({"--gateway-limits", "max-command-length=100,max-commands-per-service=1"});
  expect_command_length_100_and_one_command_per_service();
}

TEST_F(GatewayTest, TheGatewayIsConfinedAsItsOwnUser) {
  // Started with a soft open-file limit of 1024 (systemd's default), below the hard one.
  rlimit files{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  const rlimit saved = files;
  ASSERT_GT(files.rlim_max, 1024u);
  files.rlim_cur = 1024;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &files), 0);
  start();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  const pid_t gateway = gateway_pid();
  ASSERT_GT(gateway, 0) << pgod_.log();
  auto status = proc_status(gateway);
  const auto uid = std::to_string(gateway_user().uid);
  EXPECT_EQ(status["Uid"], uid + "\t" + uid + "\t" + uid + "\t" + uid);
  // Its open-file limit is raised to the hard one: two descriptors per connection.
  std::istringstream limits(read_file("/proc/" + std::to_string(gateway) + "/limits"));
  std::string soft, hard;
  for (std::string line; std::getline(limits, line);)
    if (line.rfind("Max open files", 0) == 0) std::istringstream(line.substr(14)) >> soft >> hard;
  EXPECT_FALSE(soft.empty());
  EXPECT_EQ(soft, hard);
  EXPECT_EQ(status["NoNewPrivs"], "1");
  EXPECT_EQ(status["Seccomp"], "2");
  const auto gid = std::to_string(gateway_user().gid);
  EXPECT_EQ(status["Gid"], gid + "\t" + gid + "\t" + gid + "\t" + gid);
  auto groups = status["Groups"];
  while (!groups.empty() && groups.back() == ' ') groups.pop_back();
  EXPECT_TRUE(groups.empty() || groups == gid) << "no group but its own: " << groups;
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(status[set], "0000000000000000") << set;
  // Beyond stdio: sockets and the event loop's descriptors only. No file, no directory, and
  // not the host key's memfd (read once, then closed).
  for (const auto& [fd, target] : proc_fds(gateway)) {
    if (fd <= 2) continue;
    const bool allowed = target.rfind("socket:", 0) == 0 || target.rfind("anon_inode:", 0) == 0;
    EXPECT_TRUE(allowed) << "fd " << fd << " -> " << target;
  }
  EXPECT_NE(pgod_.log().find("ready: ssh on 127.0.0.1:" + std::to_string(ssh_port_)), std::string::npos);
}

TEST_F(GatewayTest, MetricsCountCommandsPerServiceAndShowState) {
  start();
  ASSERT_EQ(ssh(key_a_, "a//ps").exit_code, 0);
  ASSERT_EQ(ssh(key_a_, "a//ping").exit_code, 0);
  std::ofstream(pgod_.standin_dir() + "/ps-exit") << "2\n";
  ASSERT_EQ(ssh(key_a_, "a//ps").exit_code, 2);
  ASSERT_EQ(ssh(key_a_, "b//ps").exit_code, 401 % 256);
  const auto text = metrics();
  ASSERT_NE(text.find("200 OK"), std::string::npos) << text;
  EXPECT_NE(text.find("pgo_command_count{cmd=\"ps\",service=\"a\",subcmd=\"\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("pgo_command_error_count{cmd=\"ps\",service=\"a\",subcmd=\"\"} 1"), std::string::npos) << text;
  // start() pinged until the keys arrived: at least once.
  EXPECT_TRUE(
      std::regex_search(text, std::regex("pgo_command_count\\{cmd=\"ping\",service=\"a\",subcmd=\"\"\\} [1-9]")))
      << text;
  EXPECT_NE(text.find("reason=\"unauthorized\""), std::string::npos) << text;
  EXPECT_NE(text.find("pgo_service_state{service=\"a\",state=\"ok\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("pgo_service_git_info{service=\"a\",hash=\"" + pgod_.upstream("a").head() + "\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("pgod_worker_restarts_total{service=\"b\"} 0"), std::string::npos) << text;
}

TEST_F(GatewayTest, ANewlyCommittedKeyIsAcceptedAfterTheCheckoutMoves) {
  start();
  const auto newcomer = make_key(pgod_.root(), "key-newcomer");
  ASSERT_EQ(ssh(newcomer, "b//ping").exit_code, 255);
  pgod_.upstream("b").commit({{"ssh/newcomer.pub", read_file(newcomer + ".pub")}});
  auto pulled = ssh(key_b_, "b//git pull");
  EXPECT_EQ(pulled.exit_code, 0) << pulled.err;
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return ssh(newcomer, "b//ping").exit_code == 0; }, 10s)) << pgod_.log();
  // Removing it takes it away again, for auth too.
  pgod_.upstream("b").commit({{"ssh/newcomer.pub", std::nullopt}});
  ASSERT_EQ(ssh(key_b_, "b//git pull").exit_code, 0);
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return ssh(newcomer, "b//ping").exit_code == 255; }, 10s));
}

// pgoctl against the real gateway: the same answers, mapped to exit codes a shell can hold, with
// the server's words on stderr.
// From inside the running gateway: a preloaded probe makes one forbidden call when it gets
// SIGUSR2, after the gateway has confined itself. The process must die of SIGSYS; an open must
// fail with EACCES and leave the gateway serving.
class GatewayFromInsideTest : public GatewayTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::unique_ptr<Background> probed_gateway(const std::string& probe, const std::string& log_path) {
    const int port = free_loopback_port();
    probe_port_ = port;
    const std::string host_key = make_key(pgod_.root(), std::string("probe-host-key-") + probe);
    std::vector<std::string> shell = {"/bin/sh",
                                      "-c",
                                      "exec \"$0\" \"$@\" 2>>" + log_path,
                                      "/usr/bin/env",
                                      std::string("LD_PRELOAD=") + PGOD_SYSCALL_PROBE_PATH,
                                      "PGOD_PROBE_SYSCALL=" + probe,
                                      "ASAN_OPTIONS=verify_asan_link_order=0",
                                      programs_dir() + "/pgod-gateway",
                                      "-s",
                                      "127.0.0.1:" + std::to_string(port),
                                      "-m",
                                      "127.0.0.1:" + std::to_string(free_loopback_port()),
                                      "--hooks",
                                      "127.0.0.1:" + std::to_string(free_loopback_port()),
                                      "--host-key",
                                      host_key,
                                      "--rundir",
                                      pgod_.rundir(),
                                      "--user",
                                      gateway_user().name};
    auto gateway = spawn_background(shell);
    EXPECT_TRUE(PgodHarness::wait_for([&]() { return read_file(log_path).find("ready: ssh on") != std::string::npos; }))
        << read_file(log_path);
    EXPECT_NE(read_file(log_path).find(std::string("probe: armed for ") + probe), std::string::npos)
        << read_file(log_path);
    return gateway;
  }
  int probe_port_ = 0;
};

TEST_P(GatewayFromInsideTest, AForbiddenCallKillsTheConfinedGateway) {
  start();
  const std::string probe = GetParam();
  const std::string log_path = pgod_.root() + "/probe-" + probe + ".log";
  auto gateway = probed_gateway(probe, log_path);
  // It serves first: confined, not broken.
  const auto saved = ssh_port_;
  ssh_port_ = probe_port_;
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_a_, "a//ping").exit_code == 0; }, 10s))
      << read_file(log_path);
  ssh_port_ = saved;
  ASSERT_EQ(kill(gateway->pid, SIGUSR2), 0);
  int status = 0;
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return waitpid(gateway->pid, &status, WNOHANG) == gateway->pid; }, 5s))
      << read_file(log_path);
  gateway->pid = -1;
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << WEXITSTATUS(status) << "\n" << read_file(log_path);
  EXPECT_EQ(WTERMSIG(status), SIGSYS) << read_file(log_path);
  EXPECT_EQ(read_file(log_path).find("was not stopped"), std::string::npos) << read_file(log_path);
}

INSTANTIATE_TEST_SUITE_P(Calls, GatewayFromInsideTest, ::testing::Values("execve", "fork", "socket_inet", "mmap_exec"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

TEST_F(GatewayTest, AnOpenFromInsideTheGatewayIsRefusedAndItKeepsServing) {
  start();
  const std::string log_path = pgod_.root() + "/probe-openat.log";
  const int port = free_loopback_port();
  const std::string host_key = make_key(pgod_.root(), "probe-host-key-openat");
  auto gateway = spawn_background({"/bin/sh",
                                   "-c",
                                   "exec \"$0\" \"$@\" 2>>" + log_path,
                                   "/usr/bin/env",
                                   std::string("LD_PRELOAD=") + PGOD_SYSCALL_PROBE_PATH,
                                   "PGOD_PROBE_SYSCALL=openat",
                                   "ASAN_OPTIONS=verify_asan_link_order=0",
                                   programs_dir() + "/pgod-gateway",
                                   "-s",
                                   "127.0.0.1:" + std::to_string(port),
                                   "-m",
                                   "127.0.0.1:" + std::to_string(free_loopback_port()),
                                   "--hooks",
                                   "127.0.0.1:" + std::to_string(free_loopback_port()),
                                   "--host-key",
                                   host_key,
                                   "--rundir",
                                   pgod_.rundir(),
                                   "--user",
                                   gateway_user().name});
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return read_file(log_path).find("ready: ssh on") != std::string::npos; }))
      << read_file(log_path);
  ASSERT_EQ(kill(gateway->pid, SIGUSR2), 0);
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() { return read_file(log_path).find("probe: openat errno=" + std::to_string(EACCES)) != std::string::npos; },
      5s))
      << read_file(log_path);
  ssh_port_ = port;
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_a_, "a//ping").exit_code == 0; }, 10s))
      << read_file(log_path);
  EXPECT_TRUE(process_alive(gateway->pid));
}

TEST_F(PgoctlGatewayTest, AKeyOfOneServiceRunsNothingOnAnother) {
  start();
  const pid_t worker_b = pgod_.worker_pid("b");
  const auto calls_before = pgod_.calls();
  for (const auto& line : every_command_for("b")) {
    std::vector<std::string> args = {"-i", key_a_, "--", "127.0.0.1:" + line.substr(0, line.find(' '))};
    for (std::size_t at = line.find(' '); at != std::string::npos;) {
      const auto next = line.find(' ', at + 1);
      args.push_back(line.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1));
      at = next;
    }
    auto refused = pgoctl(args);
    EXPECT_EQ(refused.exit_code, 401 % 256) << line << ": " << refused.err;
    EXPECT_NE(refused.err.find("does not match any for name b"), std::string::npos) << line << ": " << refused.err;
    EXPECT_EQ(refused.out, "") << line;
  }
  EXPECT_EQ(pgod_.calls(), calls_before) << "nothing ran";
  EXPECT_EQ(pgod_.worker_pid("b"), worker_b) << "b's worker was not restarted";
}

TEST_F(PgoctlGatewayTest, PingRecordsTheHostKeyOnFirstUseAndChecksItAfter) {
  start();
  auto first = pgoctl({"-i", key_a_, "127.0.0.1:a//ping"});
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "pong! - " + hostname() + "\n");
  EXPECT_NE(first.err.find("Permanently added"), std::string::npos) << first.err;
  const auto recorded = read_file(known_hosts());
  EXPECT_NE(recorded.find("[127.0.0.1]:" + std::to_string(ssh_port_) + " ssh-ed25519 "), std::string::npos) << recorded;
  auto second = pgoctl({"-i", key_a_, "127.0.0.1:a//ping"});
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.err, "");
  // The host key pgod made is the one recorded.
  auto listed = run_process({"/usr/bin/ssh-keygen", "-y", "-f", pgod_.root() + "/ssh_host_ed25519_key"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  const auto type_end = listed.out.find(' ');
  const auto blob = listed.out.substr(0, listed.out.find_first_of(" \n", type_end + 1));  // "ssh-ed25519 AAAA…"
  EXPECT_NE(recorded.find(blob), std::string::npos) << blob << " in " << recorded;
}

TEST_F(PgoctlGatewayTest, RefusalsPrintTheServersWordsAndMapTheStatus) {
  start();
  auto refused = pgoctl({"-i", key_a_, "127.0.0.1:b//ps"});
  EXPECT_EQ(refused.exit_code, 145);
  EXPECT_NE(refused.err.find("Unauthorized: Key for user \"" + login_name() + "\" does not match any for name b\n"),
            std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("pgoctl: remote exit status 401 (Unauthorized)"), std::string::npos) << refused.err;
  auto missing = pgoctl({"-i", key_a_, "127.0.0.1:nosuch//ps"});
  EXPECT_EQ(missing.exit_code, 148);
  EXPECT_NE(missing.err.find("Not Found: No service found with name \"nosuch\""), std::string::npos) << missing.err;
  auto stranger = pgoctl({"-i", key_stranger_, "127.0.0.1:a//ping"});
  EXPECT_EQ(stranger.exit_code, 255);
  auto compose_code = [&]() {
    std::ofstream(pgod_.standin_dir() + "/ps-exit") << "7\n";
    return pgoctl({"-i", key_a_, "127.0.0.1:a//ps"});
  }();
  EXPECT_EQ(compose_code.exit_code, 7) << compose_code.err;
  EXPECT_EQ(compose_code.out, "NAME          STATUS\nstandin-web-1 Up\n");
  EXPECT_EQ(compose_code.err, "") << "a compose code is passed on without a pgoctl note";
  std::filesystem::remove(pgod_.standin_dir() + "/ps-exit");
  const std::string port = std::to_string(ssh_port_);
  EXPECT_EQ(stranger.err, "pgoctl: [127.0.0.1]:" + port + " refused the key from -i " + key_stranger_ +
                              ": no key of yours is accepted by any service on that host.\npgoctl: A service takes "
                              "the keys listed in its repository's ssh/*.pub; give the matching private key with -i "
                              "FILE, the PGOCTL_ID variable or ssh-agent.\n");
  auto too_long = pgoctl({"-i", key_a_, "127.0.0.1:a//exec", "web", "echo", std::string(20000, 'x')});
  EXPECT_EQ(too_long.exit_code, 144);
  EXPECT_EQ(too_long.err,
            "Bad Request: command line too long: 20017 bytes, the limit is 16384\n"
            "pgoctl: remote exit status 400 (Bad Request)\n");
  auto refused_argument = pgoctl({"-i", key_a_, "--", "127.0.0.1:a//exec", "--privileged", "web", "sh"});
  EXPECT_EQ(refused_argument.exit_code, 150);
  EXPECT_EQ(refused_argument.err,
            "Not Acceptable: flag \"--privileged\" is not allowed for exec (privileged containers are refused) "
            "(allowed: -T/--no-TTY, -d/--detach, -e/--env, -w/--workdir, -u/--user, --index)\n"
            "pgoctl: remote exit status 406 (Not Acceptable)\n");
  EXPECT_EQ(pgod_.calls().find(" exec"), std::string::npos) << "nothing ran";
}

// What compose writes on stderr stays on stderr, through the gateway and out of both clients.
TEST_F(PgoctlGatewayTest, StdoutAndStderrStayApart) {
  start();
  std::ofstream(pgod_.standin_dir() + "/ps-stderr") << "WARNING: a warning from compose\n";
  auto through_ssh = ssh(key_a_, "a//ps");
  EXPECT_EQ(through_ssh.exit_code, 0) << through_ssh.err;
  EXPECT_EQ(through_ssh.out, "NAME          STATUS\nstandin-web-1 Up\n");
  EXPECT_EQ(through_ssh.err, "WARNING: a warning from compose\n");
  auto through_pgoctl = pgoctl({"-i", key_a_, "127.0.0.1:a//ps"});
  EXPECT_EQ(through_pgoctl.exit_code, 0) << through_pgoctl.err;
  EXPECT_EQ(through_pgoctl.out, "NAME          STATUS\nstandin-web-1 Up\n");
  EXPECT_NE(through_pgoctl.err.find("WARNING: a warning from compose\n"), std::string::npos) << through_pgoctl.err;
  EXPECT_EQ(through_pgoctl.out.find("WARNING"), std::string::npos);
}

TEST_F(PgoctlGatewayTest, AWorkerThatDiesMidCommandIsA500MappedTo244) {
  start();
  const std::string errors = pgod_.root() + "/pgoctl.err";
  std::vector<std::string> shell = {"/bin/sh",
                                    "-c",
                                    "exec \"$0\" \"$@\" 2>" + errors,
                                    PGOCTL_BIN,
                                    "-p",
                                    std::to_string(ssh_port_),
                                    "--known-hosts",
                                    known_hosts(),
                                    "-i",
                                    key_b_,
                                    "127.0.0.1:b//logs",
                                    "-f"};
  auto follower = spawn_background(shell);
  ASSERT_NE(follower->read_until("line 2\n", 10s).find("line 2\n"), std::string::npos) << pgod_.log();
  ASSERT_EQ(kill(pgod_.worker_pid("b"), SIGKILL), 0);
  int status = 0;
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return waitpid(follower->pid, &status, WNOHANG) == follower->pid; }, 10s));
  follower->pid = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 244);
  const auto printed = read_file(errors);
  EXPECT_NE(printed.find("\nInternal Server Error: the worker of b did not answer (it may be restarting); try again\n"
                         "pgoctl: remote exit status 500 (Internal Server Error)\n"),
            std::string::npos)
      << printed;
}

TEST_F(PgoctlGatewayTest, TheKeyFromPgoctlIdWorksForCi) {
  start();
  ASSERT_EQ(setenv("PGOCTL_ID", read_file(key_b_).c_str(), 1), 0);
  auto ps = pgoctl({"127.0.0.1:b//ps"});
  unsetenv("PGOCTL_ID");
  EXPECT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_EQ(ps.out, "NAME          STATUS\nstandin-web-1 Up\n");
}

TEST_F(PgoctlGatewayTest, CtrlCEndsLogsFollowOnTheWorkerToo) {
  start();
  auto follower = spawn_background({PGOCTL_BIN, "-p", std::to_string(ssh_port_), "--known-hosts", known_hosts(), "-i",
                                    key_a_, "127.0.0.1:a//logs", "-f"});
  ASSERT_NE(follower->read_until("line 3\n", 10s).find("line 3\n"), std::string::npos) << pgod_.log();
  const pid_t compose = std::stoi(read_file(pgod_.standin_dir() + "/logs.pid"));
  ASSERT_TRUE(process_alive(compose));
  ASSERT_EQ(kill(follower->pid, SIGINT), 0);
  int status = 0;
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return waitpid(follower->pid, &status, WNOHANG) == follower->pid; }, 5s));
  follower->pid = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return !process_alive(compose); }, 10s)) << pgod_.log();
}

}  // namespace
}  // namespace pgod::test
