// pgoctl as a user runs it, against OpenSSH's sshd on 127.0.0.1 with real keys. sshd's forced
// command is a script acting on $SSH_ORIGINAL_COMMAND (the line pgoctl sends), standing in for
// pgod's gateway: it prints to stdout and stderr, exits with chosen codes, streams slowly, floods,
// or prints forever.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include "process.h"
#include "sshd_fixture.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kBigOutput = 50u << 20;    // byte-exact streaming
constexpr std::size_t kFloodOutput = 64u << 20;  // more than any buffer on the way

// The forced command. "$dir" is the test's directory (the script lives there).
constexpr const char* kRemoteScript = R"(#!/bin/sh
dir=$(dirname "$0")
case "$SSH_ORIGINAL_COMMAND" in
  't//ping') echo 'pong! - test' ;;
  't//exec show') printf '%s\n' "$SSH_ORIGINAL_COMMAND" ;;
  't//exec streams') echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2 ;;
  't//exec code '*) echo "exiting ${SSH_ORIGINAL_COMMAND#t//exec code }"; exit "${SSH_ORIGINAL_COMMAND#t//exec code }" ;;
  't//exec slow') echo first; sleep 2; echo second ;;
  't//exec big') cat "$dir/big.bin" ;;
  't//exec flood') head -c 67108864 /dev/zero; touch "$dir/flood.done" ;;
  't//exec die') echo dying; kill -TERM $$ ;;
  't//logs -f') echo $$ > "$dir/forever.pid"; while :; do echo tick; sleep 0.01; done ;;
  *) echo "unexpected command: $SSH_ORIGINAL_COMMAND" >&2; exit 99 ;;
esac
)";

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

// The environment pgoctl runs with: ours, minus any key source the tests did not choose.
std::vector<std::string> environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.starts_with("SSH_AUTH_SOCK=") || text.starts_with("PGOCTL_ID=")) continue;
    env.emplace_back(text);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// A running program with stdout and stderr on pipes. Killed (by its PID) and reaped if still
// running when the object goes away.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    int out[2], err[2];
    check(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0, "pipe2");
    UniqueFd out_write(out[1]), err_write(err[1]);
    out_.reset(out[0]);
    err_.reset(err[0]);
    posix_spawn_file_actions_t actions;
    check(posix_spawn_file_actions_init(&actions) == 0, "posix_spawn_file_actions_init");
    const bool ok = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) == 0 &&
                    posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1) == 0 &&
                    posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2) == 0;
    std::vector<char*> args, envp;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    for (const auto& var : env) envp.push_back(const_cast<char*>(var.c_str()));
    args.push_back(nullptr);
    envp.push_back(nullptr);
    const int rc = ok ? posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), envp.data()) : ENOMEM;
    posix_spawn_file_actions_destroy(&actions);
    errno = rc;
    check(rc == 0, "posix_spawn " + argv[0]);
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }

  // Reads stdout and stderr until done() holds (true), or the pipes close or time runs out (false).
  bool read_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms || (!out_ && !err_) || !pump(static_cast<int>(left.count()))) return done();
    }
    return true;
  }

  // True while the process has not exited (reaps it when it has).
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
    pid_ = -1;
    status_ = status;
    return false;
  }

  // Reads both pipes to their end and reaps the process: its exit code, -N when killed by
  // signal N, nullopt on time-out.
  std::optional<int> finish(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (out_ || err_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return std::nullopt;
      pump(static_cast<int>(left.count()));
    }
    while (running()) {
      if (Clock::now() > deadline) return std::nullopt;
      std::this_thread::sleep_for(5ms);
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
  }

  std::string out, err;

 private:
  // One poll of the open pipes; false when it timed out.
  bool pump(int timeout_ms) {
    pollfd fds[2] = {{out_ ? out_.get() : -1, POLLIN, 0}, {err_ ? err_.get() : -1, POLLIN, 0}};
    const int ready = poll(fds, 2, timeout_ms);
    if (ready < 0 && errno == EINTR) return true;
    check(ready >= 0, "poll");
    if (ready == 0) return false;
    UniqueFd* pipes[2] = {&out_, &err_};
    std::string* sinks[2] = {&out, &err};
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      char buffer[65536];
      const ssize_t n = read(pipes[i]->get(), buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        pipes[i]->reset();
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int status_ = 0;
  UniqueFd out_, err_;
};

struct Result {
  int code = -1000;
  std::string out, err;
};

Result run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
  Child child(argv, environment(env));
  Result result;
  const auto code = child.finish(120s);
  EXPECT_TRUE(code.has_value()) << argv[0] << " did not finish within 120 s";
  result.code = code.value_or(-1000);
  result.out = std::move(child.out);
  result.err = std::move(child.err);
  return result;
}

// stderr without pgoctl's own lines: what the remote command wrote.
std::string remote_stderr(const std::string& err) {
  std::string kept;
  std::size_t start = 0;
  while (start < err.size()) {
    auto end = err.find('\n', start);
    end = end == std::string::npos ? err.size() : end + 1;
    if (err.compare(start, 8, "pgoctl: ") != 0) kept += err.substr(start, end - start);
    start = end;
  }
  return kept;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Gone, or a zombie nobody reaped yet (an orphan in a container whose init does not reap).
bool process_gone(pid_t pid) {
  const auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

class PgoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = dir_.path() + "/id_ed25519";
    authorized_keys_ = dir_.write("authorized_keys", make_ssh_key(key_) + "\n");
    script_ = dir_.write("remote.sh", kRemoteScript);
    ASSERT_EQ(chmod(script_.c_str(), 0755), 0);
    known_hosts_ = dir_.path() + "/known_hosts";
    start_sshd();
  }

  void start_sshd(const std::string& host_key = "", int port = 0) {
    SshdOptions options;
    options.authorized_keys = authorized_keys_;
    options.host_key = host_key;
    options.force_command = script_;
    options.port = port;
    sshd_.reset();
    sshd_ = std::make_unique<Sshd>(dir_.path(), options);
  }

  // pgoctl's arguments up to the identity: the test's port and known_hosts file.
  std::vector<std::string> pgoctl(std::vector<std::string> args) const {
    std::vector<std::string> argv{PGOCTL_BIN, "-p", std::to_string(sshd_->port()), "--known-hosts", known_hosts_};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  std::string add_authorized_key(const std::string& name, const std::string& type) {
    const auto path = dir_.path() + "/" + name;
    const auto public_key = make_ssh_key(path, type);
    const auto keys = read_file(authorized_keys_) + public_key + "\n";
    dir_.write("authorized_keys", keys);
    return path;
  }

  TempDir dir_;
  std::string key_, authorized_keys_, script_, known_hosts_;
  std::unique_ptr<Sshd> sshd_;
};

TEST_F(PgoctlTest, StdoutAndStderrAreKeptApart) {
  const auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//exec", "streams"}));
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.out, "out-1\nout-2\n");
  EXPECT_EQ(remote_stderr(result.err), "err-1\nerr-2\n") << result.err;
}

TEST_F(PgoctlTest, SendsTheCommandLineWithoutTheHost) {
  const auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//exec", "show"}));
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.out, "t//exec show\n");
}

TEST_F(PgoctlTest, ExitCodesPassThrough) {
  for (const char* code : {"0", "3", "42"}) {
    const auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//exec", "code", code}));
    EXPECT_EQ(result.code, std::stoi(code)) << result.err;
    EXPECT_EQ(result.out, std::string("exiting ") + code + "\n");
    // A command's own code is not one of pgod's: no "remote exit status" note.
    EXPECT_FALSE(contains(result.err, "remote exit status")) << result.err;
  }
}

TEST_F(PgoctlTest, IdentityFromFileWinsOverPgoctlId) {
  const auto stranger = dir_.path() + "/id_stranger";
  make_ssh_key(stranger);
  const auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//ping"}), {"PGOCTL_ID=" + read_file(stranger)});
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.out, "pong! - test\n");
}

TEST_F(PgoctlTest, IdentityFromPgoctlIdContents) {
  const auto result = run(pgoctl({"127.0.0.1:t//ping"}), {"PGOCTL_ID=" + read_file(key_)});
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.out, "pong! - test\n");
}

TEST_F(PgoctlTest, RsaKeyLogsIn) {
  const auto rsa = add_authorized_key("id_rsa", "rsa");
  const auto result = run(pgoctl({"-i", rsa, "127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 0) << result.err << sshd_->log();
  EXPECT_EQ(result.out, "pong! - test\n");
}

// Whether a unix socket at `path` accepts a connection (the file exists between the agent's
// bind and its listen, when a connect is still refused).
bool accepts_connections(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (!fd || path.size() >= sizeof address.sun_path) return false;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
}

// ssh-agent run by the test in the foreground (-D), so it is our child, killed by its PID.
void check_agent_login(const std::string& key, const std::string& directory,
                       const std::function<Result(const std::vector<std::string>&)>& run_with_env) {
  const auto socket_path = directory + "/agent.sock";
  Child agent({"/usr/bin/ssh-agent", "-D", "-a", socket_path}, environment({}));
  const auto deadline = Clock::now() + 5s;
  while (!accepts_connections(socket_path) && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(accepts_connections(socket_path)) << "ssh-agent does not listen on " << socket_path;
  const auto added = run({"/usr/bin/ssh-add", key}, {"SSH_AUTH_SOCK=" + socket_path});
  ASSERT_EQ(added.code, 0) << added.err;

  const auto result = run_with_env({"SSH_AUTH_SOCK=" + socket_path});
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.out, "pong! - test\n");
}

TEST_F(PgoctlTest, IdentityFromSshAgent) {
  check_agent_login(key_, dir_.path(),
                    [&](const std::vector<std::string>& env) { return run(pgoctl({"127.0.0.1:t//ping"}), env); });
}

TEST_F(PgoctlTest, RsaKeyFromSshAgent) {
  const auto rsa = add_authorized_key("id_rsa", "rsa");
  check_agent_login(rsa, dir_.path(),
                    [&](const std::vector<std::string>& env) { return run(pgoctl({"127.0.0.1:t//ping"}), env); });
}

TEST_F(PgoctlTest, AKeyNoServiceListsIsRefused) {
  const auto stranger = dir_.path() + "/id_stranger";
  make_ssh_key(stranger);
  const auto result = run(pgoctl({"-i", stranger, "127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 255);
  EXPECT_EQ(result.out, "");
  EXPECT_TRUE(contains(result.err, "[127.0.0.1]:" + std::to_string(sshd_->port()) + " refused the key from -i " +
                                       stranger + ": no key of yours is accepted by any service on that host."))
      << result.err;
  EXPECT_TRUE(contains(result.err, "-i FILE, the PGOCTL_ID variable or ssh-agent")) << result.err;
}

TEST_F(PgoctlTest, KeyProblemsAreNamedBeforeConnecting) {
  const auto locked = dir_.path() + "/id_locked";
  make_ssh_key(locked, "ed25519", "secret");
  auto result = run(pgoctl({"-i", locked, "127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 255);
  EXPECT_TRUE(contains(result.err, "pgoctl: the key from -i " + locked + " is protected by a passphrase"))
      << result.err;

  result = run(pgoctl({"127.0.0.1:t//ping"}), {"PGOCTL_ID=not a key"});
  EXPECT_EQ(result.code, 255);
  EXPECT_TRUE(contains(result.err, "the key from $PGOCTL_ID is not a private key")) << result.err;

  result = run(pgoctl({"-i", dir_.path() + "/missing", "127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 255);
  EXPECT_EQ(result.err, "pgoctl: cannot read the key " + dir_.path() + "/missing: No such file or directory\n");

  result = run(pgoctl({"127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 255);
  EXPECT_TRUE(contains(result.err, "no key to log in with: give -i FILE, set PGOCTL_ID")) << result.err;

  result = run(pgoctl({"127.0.0.1:t//ping"}), {"SSH_AUTH_SOCK=" + dir_.path() + "/no-agent.sock"});
  EXPECT_EQ(result.code, 255);
  EXPECT_TRUE(contains(result.err, "cannot reach ssh-agent at " + dir_.path() + "/no-agent.sock")) << result.err;
  // None of these reached sshd.
  EXPECT_FALSE(contains(sshd_->log(), "Connection from")) << sshd_->log();
}

TEST_F(PgoctlTest, KnownHostsRecordsTheKeyOnFirstUseAndChecksItAfter) {
  const auto label = "[127.0.0.1]:" + std::to_string(sshd_->port());
  auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_TRUE(contains(result.err, "pgoctl: Warning: Permanently added '" + label + "' (ssh-ed25519 SHA256:"))
      << result.err;
  EXPECT_TRUE(contains(result.err, "to the list of known hosts in " + known_hosts_ + ".")) << result.err;
  EXPECT_EQ(read_file(known_hosts_), label + " " + sshd_->host_public_key() + "\n");

  result = run(pgoctl({"-i", key_, "127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(result.out, "pong! - test\n");
  EXPECT_EQ(read_file(known_hosts_), label + " " + sshd_->host_public_key() + "\n");
}

TEST_F(PgoctlTest, AChangedHostKeyIsRefusedLoudly) {
  auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//ping"}));
  ASSERT_EQ(result.code, 0) << result.err;
  const auto recorded = read_file(known_hosts_);

  // The same address and port, another host key: what a man in the middle looks like.
  const int port = sshd_->port();
  sshd_->stop();
  const auto other_key = dir_.path() + "/other_host_key";
  make_ssh_key(other_key);
  start_sshd(other_key, port);

  const auto label = "[127.0.0.1]:" + std::to_string(port);
  result = run(pgoctl({"-i", key_, "127.0.0.1:t//exec", "show"}));
  EXPECT_EQ(result.code, 255);
  EXPECT_EQ(result.out, "");
  EXPECT_TRUE(contains(result.err, "WARNING: THE HOST KEY OF " + label + " HAS CHANGED")) << result.err;
  EXPECT_TRUE(contains(result.err, "not the key recorded for it in " + known_hosts_)) << result.err;
  EXPECT_TRUE(contains(result.err, "ssh-keygen -f '" + known_hosts_ + "' -R '" + label + "'")) << result.err;
  EXPECT_EQ(read_file(known_hosts_), recorded);

  result = run(pgoctl({"--insecure-no-host-key-check", "-i", key_, "127.0.0.1:t//ping"}));
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.out, "pong! - test\n");
  EXPECT_EQ(read_file(known_hosts_), recorded);
}

// pgoctl on a command that prints forever, then a signal: pgoctl ends within a second with
// 128+signal, and the remote command is gone soon after (sshd closes its pipes when the channel
// goes; its next write kills it).
void check_signal_ends_remote_command(const std::vector<std::string>& argv, const std::string& directory, int signo) {
  Child child(argv, environment({}));
  ASSERT_TRUE(child.read_until([&] { return contains(child.out, "tick\n"); }, 20s)) << child.err;
  const auto remote_pid = std::stoi(read_file(directory + "/forever.pid"));
  ASSERT_GT(remote_pid, 1);
  ASSERT_FALSE(process_gone(remote_pid));

  const auto signalled = Clock::now();
  ASSERT_EQ(kill(child.pid(), signo), 0);
  const auto code = child.finish(1s);
  EXPECT_LT(Clock::now() - signalled, 1s);
  ASSERT_TRUE(code.has_value()) << "pgoctl still running a second after the signal";
  EXPECT_EQ(*code, 128 + signo) << child.err;

  const auto deadline = Clock::now() + 5s;
  while (!process_gone(remote_pid) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  const bool gone = process_gone(remote_pid);
  if (!gone) kill(remote_pid, SIGKILL);  // the test's own leftover, by its PID
  EXPECT_TRUE(gone) << "the remote command (pid " << remote_pid << ") outlived pgoctl by 5 s";
}

TEST_F(PgoctlTest, CtrlCEndsTheRemoteCommandAndExits130) {
  check_signal_ends_remote_command(pgoctl({"-i", key_, "--", "127.0.0.1:t//logs", "-f"}), dir_.path(), SIGINT);
}

TEST_F(PgoctlTest, SigtermEndsTheRemoteCommandAndExits143) {
  check_signal_ends_remote_command(pgoctl({"-i", key_, "--", "127.0.0.1:t//logs", "-f"}), dir_.path(), SIGTERM);
}

TEST_F(PgoctlTest, OutputArrivesWhileTheCommandRuns) {
  const auto started = Clock::now();
  Child child(pgoctl({"-i", key_, "127.0.0.1:t//exec", "slow"}), environment({}));
  ASSERT_TRUE(child.read_until([&] { return contains(child.out, "first\n"); }, 20s)) << child.err;
  // The remote command sleeps 2 s before its second line: pgoctl has not waited for it.
  EXPECT_FALSE(contains(child.out, "second"));
  EXPECT_TRUE(child.running());
  const auto code = child.finish(20s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << child.err;
  EXPECT_EQ(child.out, "first\nsecond\n");
  EXPECT_GE(Clock::now() - started, 2s);
}

TEST_F(PgoctlTest, LargeOutputArrivesByteExact) {
  std::string data(kBigOutput, '\0');
  std::mt19937_64 random(42);
  for (std::size_t i = 0; i + 8 <= data.size(); i += 8) {
    const auto word = random();
    std::memcpy(&data[i], &word, 8);
  }
  dir_.write("big.bin", data);
  const auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//exec", "big"}));
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(result.out.size(), data.size());
  EXPECT_TRUE(result.out == data) << "the output differs from the file";
}

TEST_F(PgoctlTest, ASlowReaderHoldsTheServerBack) {
  Child child(pgoctl({"-i", key_, "127.0.0.1:t//exec", "flood"}), environment({}));
  // Nobody reads pgoctl's stdout for 2 s. Were pgoctl to buffer instead of blocking, the remote
  // command would have written its 64 MiB (sshd on loopback moves ~300 MB/s) and finished.
  std::this_thread::sleep_for(2s);
  EXPECT_TRUE(child.running());
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/flood.done"));
  const auto code = child.finish(120s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << child.err;
  EXPECT_EQ(child.out.size(), kFloodOutput);
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/flood.done"));
}

// Ctrl-C to a running pgoctl: it ends within a second with 128 + SIGINT.
void interrupt_and_expect_130(Child& child) {
  ASSERT_TRUE(child.running());
  const auto signalled = Clock::now();
  ASSERT_EQ(kill(child.pid(), SIGINT), 0);
  const auto code = child.finish(2s);
  ASSERT_TRUE(code.has_value());
  EXPECT_LT(Clock::now() - signalled, 1s);
  EXPECT_EQ(*code, 130) << child.err;
}

TEST_F(PgoctlTest, CtrlCWhileOutputIsBlockedStillEndsAtOnce) {
  Child child(pgoctl({"-i", key_, "127.0.0.1:t//exec", "flood"}), environment({}));
  // pgoctl is now blocked writing to a pipe nobody reads.
  std::this_thread::sleep_for(1500ms);
  interrupt_and_expect_130(child);
}

TEST_F(PgoctlTest, ARemoteCommandKilledBySignalIsNamed) {
  const auto result = run(pgoctl({"-i", key_, "127.0.0.1:t//exec", "die"}));
  EXPECT_EQ(result.code, 255);
  EXPECT_EQ(result.out, "dying\n");
  EXPECT_TRUE(contains(result.err, "pgoctl: the remote command was killed by SIGTERM\n")) << result.err;
}

TEST_F(PgoctlTest, AServerGoneMidStreamIsAFailureNotSuccess) {
  Child child(pgoctl({"-i", key_, "--", "127.0.0.1:t//logs", "-f"}), environment({}));
  ASSERT_TRUE(child.read_until([&] { return contains(child.out, "tick\n"); }, 20s)) << child.err;
  const auto remote_pid = std::stoi(read_file(dir_.path() + "/forever.pid"));
  // SIGKILL to the processes serving the connection: it drops without a word.
  for (const pid_t pid : sshd_->session_pids()) kill(pid, SIGKILL);
  const auto code = child.finish(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 255);
  EXPECT_TRUE(contains(child.err, "ended the session without an exit status")) << child.err;
  const auto deadline = Clock::now() + 5s;
  while (!process_gone(remote_pid) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  if (!process_gone(remote_pid)) kill(remote_pid, SIGKILL);  // the test's own leftover, by its PID
}

// A TCP listener on 127.0.0.1 that never answers (the kernel completes connections into its
// backlog): a server that hangs, or counts connection attempts.
struct SilentListener {
  SilentListener() {
    fd.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    check(fd && bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
              listen(fd.get(), 8) == 0 && getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0,
          "listener");
    port = ntohs(address.sin_port);
  }
  UniqueFd fd;
  int port = 0;
};

TEST_F(PgoctlTest, CtrlCWhileConnectingEndsAtOnce) {
  SilentListener silent;
  Child child(
      {PGOCTL_BIN, "-p", std::to_string(silent.port), "--known-hosts", known_hosts_, "-i", key_, "127.0.0.1:t//ping"},
      environment({}));
  std::this_thread::sleep_for(500ms);  // pgoctl now waits for the server's greeting
  interrupt_and_expect_130(child);
}

TEST_F(PgoctlTest, UnknownCommandNamesTheValidOnesAndConnectsNowhere) {
  SilentListener listener;
  const auto result = run({PGOCTL_BIN, "-p", std::to_string(listener.port), "-i", key_, "127.0.0.1:t//frob"});
  EXPECT_EQ(result.code, 255);
  EXPECT_TRUE(contains(result.err, "pgoctl: Not Acceptable: Command \"frob\" does not match any route\n"));
  EXPECT_TRUE(contains(result.err, "pgoctl: valid commands: up, down,")) << result.err;
  EXPECT_LT(accept(listener.fd.get(), nullptr, nullptr), 0);
  EXPECT_EQ(errno, EAGAIN);
}

TEST_F(PgoctlTest, NothingListeningIsAClearFailure) {
  const int port = free_loopback_port();
  const auto result =
      run({PGOCTL_BIN, "-p", std::to_string(port), "--known-hosts", known_hosts_, "-i", key_, "127.0.0.1:t//ping"});
  EXPECT_EQ(result.code, 255);
  EXPECT_TRUE(contains(result.err, "pgoctl: cannot connect to 127.0.0.1 port " + std::to_string(port) + ": "))
      << result.err;
}

TEST_F(PgoctlTest, InvalidPortIsRefused) {
  const auto result = run({PGOCTL_BIN, "-p", "70000", "-i", key_, "127.0.0.1:t//ping"});
  EXPECT_EQ(result.code, 255);
  EXPECT_EQ(result.err, "pgoctl: invalid port \"70000\" (expected a number from 1 to 65535)\n");
}

}  // namespace
}  // namespace pgod::test
