// The gateway's end-to-end fixture: pgod (as root, real test users, the stand-in docker) with
// services a and b, each listing its own key, and the real pgod-gateway on loopback ports; ssh
// and pgoctl as clients, and background clients the tests read from, stop or kill.
#pragma once

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

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pgod_harness.h"
#include "process.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::test {

using namespace std::chrono_literals;

inline std::string make_key(const std::string& dir, const std::string& name, const std::string& type = "ed25519") {
  const std::string path = dir + "/" + name;
  auto made = run_process({"/usr/bin/ssh-keygen", "-q", "-t", type, "-N", "", "-C", name + "@test", "-f", path});
  if (made.exit_code != 0) throw std::runtime_error("ssh-keygen: " + made.err);
  return path;
}

inline std::string hostname() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// A process whose stdout the test reads (or deliberately does not read).
struct Background {
  pid_t pid = -1;
  UniqueFd out;
  ~Background() { stop(); }
  void stop(int signal_number = SIGTERM) {
    if (pid <= 0) return;
    kill(pid, signal_number);
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
  }
  // Reads and discards until `count` bytes came or `limit` passes; returns how many came.
  std::size_t read_bytes(std::size_t count, std::chrono::milliseconds limit) {
    std::size_t total = 0;
    const auto end = std::chrono::steady_clock::now() + limit;
    while (total < count && std::chrono::steady_clock::now() < end) {
      pollfd ready{out.get(), POLLIN, 0};
      if (poll(&ready, 1, 100) <= 0) continue;
      char buffer[65536];
      const ssize_t got = read(out.get(), buffer, sizeof buffer);
      if (got <= 0) break;
      total += static_cast<std::size_t>(got);
    }
    return total;
  }
  // Reads until `needle` shows up or `limit` passes; returns what was read.
  std::string read_until(const std::string& needle, std::chrono::milliseconds limit) {
    std::string text;
    const auto end = std::chrono::steady_clock::now() + limit;
    while (text.find(needle) == std::string::npos && std::chrono::steady_clock::now() < end) {
      pollfd ready{out.get(), POLLIN, 0};
      if (poll(&ready, 1, 100) <= 0) continue;
      char buffer[4096];
      const ssize_t got = read(out.get(), buffer, sizeof buffer);
      if (got <= 0) break;
      text.append(buffer, static_cast<std::size_t>(got));
    }
    return text;
  }
};

inline std::unique_ptr<Background> spawn_background(const std::vector<std::string>& argv) {
  auto background = std::make_unique<Background>();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  background->out.reset(fds[0]);
  UniqueFd write_end(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const int rc = posix_spawn(&background->pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn");
  return background;
}

inline bool process_alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

class GatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    keys_ = new TempDir();
    key_a_ = make_key(keys_->path(), "key-a");
    key_b_ = make_key(keys_->path(), "key-b", "rsa");
    key_stranger_ = make_key(keys_->path(), "key-stranger");
  }
  static void TearDownTestSuite() {
    delete keys_;
    keys_ = nullptr;
  }

  // pgod with services a and b, each listing its own key, and the real gateway.
  void start(std::vector<std::string> gateway_flags = {}, const std::string& extra_config = "") {
    ssh_port_ = free_loopback_port();
    metrics_port_ = free_loopback_port();
    pgod_.upstream("a").commit({{"ssh/dev.pub", read_file(key_a_ + ".pub")}});
    pgod_.upstream("b").commit({{"ssh/ci.pub", read_file(key_b_ + ".pub")}});
    pgod_.write_config(PgodHarness::service_toml("a", service_user_a().name, pgod_.upstream("a").path()) +
                       PgodHarness::service_toml("b", service_user_b().name, pgod_.upstream("b").path()) +
                       extra_config);
    std::vector<std::string> args = {"--gateway-program",
                                     programs_dir() + "/pgod-gateway",
                                     "-s",
                                     "127.0.0.1:" + std::to_string(ssh_port_),
                                     "-m",
                                     "127.0.0.1:" + std::to_string(metrics_port_)};
    args.insert(args.end(), gateway_flags.begin(), gateway_flags.end());
    pgod_.start(args);
    ASSERT_TRUE(pgod_.wait_ready({"a", "b"})) << pgod_.log();
    // The keys reach the gateway from the workers: wait until both services answer.
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_a_, "a//ping").exit_code == 0; }, 20s)) << pgod_.log();
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_b_, "b//ping").exit_code == 0; }, 20s)) << pgod_.log();
  }

  std::vector<std::string> ssh_argv(const std::string& key, const std::string& command,
                                    const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> argv = {"/usr/bin/ssh",
                                     "-F",
                                     "/dev/null",
                                     "-p",
                                     std::to_string(ssh_port_),
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
                                     "LogLevel=ERROR"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("tester@127.0.0.1");
    if (!command.empty()) argv.push_back(command);
    return argv;
  }
  ProcessResult ssh(const std::string& key, const std::string& command,
                    const std::vector<std::string>& extra = {}) const {
    return run_process(ssh_argv(key, command, extra));
  }

  // Two silent clients fill the unauthenticated slots (--max-unauthenticated 2); a third is
  // closed at once, unserved; the silent ones are dropped at the 1 s login time-out.
  void expect_two_unauthenticated_slots_and_a_1s_login_timeout(int port) {
    auto raw_connect = [&]() {
      UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return UniqueFd();
      return fd;
    };
    // Reads until EOF or `limit`; returns (bytes, closed).
    auto drain = [](int fd, std::chrono::milliseconds limit) {
      std::string text;
      const auto end = std::chrono::steady_clock::now() + limit;
      while (std::chrono::steady_clock::now() < end) {
        pollfd ready{fd, POLLIN, 0};
        if (poll(&ready, 1, 50) <= 0) continue;
        char buffer[512];
        const ssize_t got = read(fd, buffer, sizeof buffer);
        if (got <= 0) return std::pair{text, true};
        text.append(buffer, static_cast<std::size_t>(got));
      }
      return std::pair{text, false};
    };
    auto first = raw_connect(), second = raw_connect();
    ASSERT_TRUE(first && second);
    EXPECT_EQ(drain(first.get(), 300ms).first.rfind("SSH-2.0-", 0), 0u);
    auto third = raw_connect();
    auto [third_text, third_closed] = drain(third.get(), 2s);
    EXPECT_TRUE(third_closed);
    EXPECT_EQ(third_text, "");
    // The silent ones are dropped at the login time-out.
    auto [first_text, first_closed] = drain(first.get(), 4s);
    EXPECT_TRUE(first_closed) << "still open after the 1 s login time-out";
    // Then there is room again.
    EXPECT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_a_, "a//ping").exit_code == 0; }, 5s));
  }

  // One session per connection: a second channel on a multiplexed OpenSSH connection is refused,
  // the first keeps working.
  void expect_one_session_per_connection() {
    const std::string control = pgod_.root() + "/mux";
    auto master = spawn_background(ssh_argv(key_a_, "", {"-M", "-S", control, "-N"}));
    ASSERT_TRUE(PgodHarness::wait_for([&]() { return std::filesystem::exists(control); }, 10s));
    auto first_session = spawn_background(ssh_argv(key_a_, "a//logs -f", {"-S", control}));
    ASSERT_NE(first_session->read_until("line 2\n", 10s).find("line 2\n"), std::string::npos);
    auto second_session = ssh(key_a_, "a//ping", {"-S", control});
    EXPECT_NE(second_session.exit_code, 0);
    EXPECT_NE(second_session.err.find("Session open refused by peer"), std::string::npos) << second_session.err;
    EXPECT_NE(first_session->read_until("line 6\n", 10s).find("line 6\n"), std::string::npos);
    first_session->stop();
    master->stop();
  }

  // The gateway on ssh_port_ runs with --max-command-length 100 and --max-commands-per-service 1.
  void expect_command_length_100_and_one_command_per_service() const {
    auto long_line = ssh(key_a_, "a//exec web echo " + std::string(200, 'x'));
    EXPECT_EQ(long_line.exit_code, 400 % 256);
    EXPECT_EQ(long_line.err, "Bad Request: command line too long: 217 bytes, the limit is 100\n");
    auto follower = spawn_background(ssh_argv(key_a_, "a//logs -f"));
    ASSERT_NE(follower->read_until("line 2\n", 10s).find("line 2\n"), std::string::npos);
    auto busy = ssh(key_a_, "a//ps");
    EXPECT_EQ(busy.exit_code, 500 % 256);
    EXPECT_EQ(busy.err, "Internal Server Error: too many commands running for a (the limit is 1); try again later\n");
    EXPECT_EQ(ssh(key_b_, "b//ps").exit_code, 0) << "another service is not affected";
  }

  pid_t gateway_pid() const { return pgod::test::gateway_pid(pgod_.log()); }

  std::string metrics() const {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(metrics_port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return "";
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd.get(), request.data(), request.size()) < 0) return "";
    // Read the headers, then exactly Content-Length bytes (the server may keep the connection).
    std::string response;
    char buffer[4096];
    std::size_t wanted = std::string::npos;
    while (wanted == std::string::npos || response.size() < wanted) {
      const ssize_t got = read(fd.get(), buffer, sizeof buffer);
      if (got <= 0) break;
      response.append(buffer, static_cast<std::size_t>(got));
      const auto end = response.find("\r\n\r\n");
      const auto length = response.find("Content-Length: ");
      if (wanted == std::string::npos && end != std::string::npos && length != std::string::npos)
        wanted = end + 4 + std::stoul(response.substr(length + 16));
    }
    return response;
  }

  inline static TempDir* keys_ = nullptr;
  inline static std::string key_a_, key_b_, key_stranger_;
  PgodHarness pgod_;
  int ssh_port_ = 0;
  int metrics_port_ = 0;
};

class PgoctlGatewayTest : public GatewayTest {
 protected:
  ProcessResult pgoctl(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {PGOCTL_BIN, "-p", std::to_string(ssh_port_), "--known-hosts", known_hosts()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv);
  }
  std::string known_hosts() const { return pgod_.root() + "/known_hosts"; }
  static std::string login_name() {
    auto who = run_process({"/usr/bin/id", "-un"});
    return who.out.substr(0, who.out.find('\n'));
  }
};

}  // namespace pgod::test
