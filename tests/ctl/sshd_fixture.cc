#include "sshd_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "process.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::test {
namespace {

// Absolute: sshd re-executes itself for every connection and refuses a relative path.
constexpr const char* kSshd = "/usr/sbin/sshd";
constexpr auto kStartTimeout = std::chrono::seconds(10);
constexpr auto kStopTimeout = std::chrono::seconds(5);

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string errno_text() { return std::strerror(errno); }

std::string trim_newline(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace

std::string make_ssh_key(const std::string& path, const std::string& type, const std::string& passphrase) {
  // ssh-keygen asks before overwriting, which would hang without a terminal.
  std::error_code ignored;
  std::filesystem::remove(path, ignored);
  std::filesystem::remove(path + ".pub", ignored);
  std::vector<std::string> argv{"/usr/bin/ssh-keygen", "-q", "-t", type, "-N", passphrase, "-C",
                                "pgod-test",           "-f", path};
  // 2048 bits: still accepted everywhere, and much quicker to make than the default 3072.
  if (type == "rsa") argv.insert(argv.end(), {"-b", "2048"});
  const auto result = run_process(argv);
  if (result.exit_code != 0) fail("ssh-keygen -t " + type + " failed: " + result.err);
  const auto public_key = trim_newline(read_file(path + ".pub"));
  if (public_key.empty()) fail("ssh-keygen wrote no " + path + ".pub");
  return public_key;
}

Sshd::Sshd(std::string directory, SshdOptions options)
    : directory_(std::move(directory)), options_(std::move(options)) {
  // sshd will not start without its privilege separation directory; Debian makes it at boot,
  // a container may not have it.
  if (mkdir("/run/sshd", 0755) != 0 && errno != EEXIST) fail("mkdir /run/sshd: " + errno_text());
  if (options_.host_key.empty()) {
    options_.host_key = directory_ + "/ssh_host_ed25519_key";
    if (!std::filesystem::exists(options_.host_key)) make_ssh_key(options_.host_key);
  }
  const bool pick_port = options_.port == 0;
  for (int attempt = 1;; ++attempt) {
    port_ = pick_port ? free_loopback_port() : options_.port;
    try {
      start_once();
      return;
    } catch (const std::runtime_error&) {
      // Someone else may take the free port between our probe and sshd's bind: try another.
      if (!pick_port || attempt == 5 || log().find("Cannot bind any address") == std::string::npos) throw;
    }
  }
}

Sshd::~Sshd() { stop(); }

void Sshd::start_once() {
  // Each start gets its own config and log, so a restart in the same directory keeps the old log.
  static std::atomic<int> starts{0};
  const auto suffix = std::to_string(getpid()) + "." + std::to_string(starts++);
  config_path_ = directory_ + "/sshd_config." + suffix;
  log_path_ = directory_ + "/sshd.log." + suffix;
  {
    std::ofstream config(config_path_);
    config << "ListenAddress 127.0.0.1\n"
           << "Port " << port_ << "\n"
           << "HostKey " << options_.host_key << "\n"
           << "AuthorizedKeysFile " << options_.authorized_keys << "\n"
           << "PidFile none\n"
           << "UsePAM no\n"
           << "StrictModes no\n"
           << "PermitRootLogin yes\n"
           << "PubkeyAuthentication yes\n"
           << "PasswordAuthentication no\n"
           << "KbdInteractiveAuthentication no\n"
           << "UseDNS no\n"
           << "PrintMotd no\n"
           << "PrintLastLog no\n"
           << "LogLevel VERBOSE\n";
    if (!options_.force_command.empty()) config << "ForceCommand " << options_.force_command << "\n";
    for (const auto& line : options_.extra_config) config << line << "\n";
    if (!config) fail("cannot write " + config_path_);
  }

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  if (posix_spawn_file_actions_init(&actions) != 0 || posix_spawnattr_init(&attributes) != 0)
    fail("posix_spawn set-up failed");
  sigset_t no_signals;
  sigemptyset(&no_signals);
  // No signal blocked, whatever the test runner blocks: stop() relies on SIGTERM.
  bool ok = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) == 0 &&
            posix_spawn_file_actions_addopen(&actions, 2, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600) == 0 &&
            posix_spawn_file_actions_adddup2(&actions, 2, 1) == 0 &&
            posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK) == 0 &&
            posix_spawnattr_setsigmask(&attributes, &no_signals) == 0;
  std::vector<std::string> args{kSshd, "-D", "-e", "-f", config_path_};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int rc = ok ? posix_spawn(&pid_, kSshd, &actions, &attributes, argv.data(), environ) : -1;
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    pid_ = -1;
    fail(std::string("cannot start ") + kSshd + ": " + (rc > 0 ? std::strerror(rc) : "spawn set-up failed"));
  }

  const auto listening = "Server listening on 127.0.0.1 port " + std::to_string(port_) + ".";
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  for (;;) {
    if (log().find(listening) != std::string::npos) return;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      fail("sshd exited at start:\n" + log());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop();
      fail("sshd did not listen within 10 s:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Sshd::host_public_key() const {
  std::istringstream line(read_file(options_.host_key + ".pub"));
  std::string type, key;
  line >> type >> key;
  return type + " " + key;
}

std::string Sshd::log() const { return log_path_.empty() ? "" : read_file(log_path_); }

std::vector<pid_t> Sshd::session_pids() const {
  std::vector<pid_t> found;
  if (pid_ <= 0) return found;
  // Parent links from /proc; sshd's per-connection processes call setsid(), so neither its
  // process group nor its session reaches them.
  std::multimap<pid_t, pid_t> children;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto stat = read_file(entry.path().string() + "/stat");
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(paren + 1));
    std::string state;
    pid_t parent = 0;
    if (fields >> state >> parent) children.emplace(parent, std::stoi(name));
  }
  std::vector<pid_t> queue{pid_};
  for (std::size_t i = 0; i < queue.size(); ++i) {
    const auto [first, last] = children.equal_range(queue[i]);
    for (auto it = first; it != last; ++it) {
      queue.push_back(it->second);
      found.push_back(it->second);
    }
  }
  return found;
}

void Sshd::stop() {
  if (pid_ <= 0) return;
  const auto sessions = session_pids();
  for (const pid_t pid : sessions) kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
  const auto alive = [](pid_t pid) {
    return kill(pid, 0) == 0 && read_file("/proc/" + std::to_string(pid) + "/stat").find(") Z") == std::string::npos;
  };
  stop_child(pid_, std::chrono::duration_cast<std::chrono::milliseconds>(kStopTimeout));
  for (const pid_t pid : sessions) {
    while (alive(pid) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (alive(pid)) kill(pid, SIGKILL);
  }
  pid_ = -1;
}

}  // namespace pgod::test
