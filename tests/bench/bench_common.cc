#include "bench_common.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "unique_fd.h"

extern char** environ;

namespace pgod::bench {

using namespace std::chrono_literals;
using pgod::UniqueFd;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return NAN;
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

void figure(const std::string& key, const std::vector<double>& samples) {
  std::string line = "BENCH " + key;
  for (double sample : samples) {
    char text[40];
    std::snprintf(text, sizeof text, " %.4f", sample);
    line += text;
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void figure(const std::string& key, double sample) { figure(key, std::vector<double>{sample}); }

void figure_text(const std::string& key, const std::string& text) {
  std::printf("BENCHTEXT %s %s\n", key.c_str(), first_line(text).c_str());
  std::fflush(stdout);
}

namespace {

// The child's side of run() with a RunAs: everything was prepared before fork, so only
// async-signal-safe calls happen here.
[[noreturn]] void exec_as(const RunAs& as, int out, int err, char* const* argv, char* const* env) {
  const int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
  if (setgroups(as.groups.size(), as.groups.data()) != 0 || setgid(as.gid) != 0 || setuid(as.uid) != 0) _exit(126);
  if (!as.dir.empty() && chdir(as.dir.c_str()) != 0) _exit(126);
  execve(argv[0], argv, env);
  _exit(127);
}

}  // namespace

Run run(const std::vector<std::string>& argv, const std::optional<RunAs>& as) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  UniqueFd out_read(out[0]), out_write(out[1]), err_read(err[0]), err_write(err[1]);
  fcntl(out[0], F_SETPIPE_SZ, 1 << 20);  // fewer wake-ups for the bench's side of a stream
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  if (as)
    for (const auto& entry : as->env) env.push_back(const_cast<char*>(entry.c_str()));
  env.push_back(nullptr);

  Run result;
  pid_t pid = 0;
  result.start = Clock::now();
  if (as) {
    pid = fork();
    if (pid == 0) exec_as(*as, out[1], err[1], args.data(), env.data());
    if (pid < 0) throw std::runtime_error("fork for " + argv[0]);
  } else {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0]);
  }
  out_write.reset();
  err_write.reset();

  const std::size_t size = 1 << 20;
  std::unique_ptr<char[]> buffer(new char[size]);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  for (int open = 2; open > 0;) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) throw std::runtime_error("poll");
    for (auto& fd : fds) {
      if (fd.fd < 0 || fd.revents == 0) continue;
      const ssize_t n = read(fd.fd, buffer.get(), size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fd.fd = -1;
        --open;
      } else if (fd.fd == out[0]) {
        if (result.bytes == 0) result.first_byte = Clock::now();
        result.bytes += static_cast<std::uint64_t>(n);
        if (result.head.size() < 4096)
          result.head.append(buffer.get(), std::min<std::size_t>(static_cast<std::size_t>(n), 4096));
      } else {
        result.err.append(buffer.get(), static_cast<std::size_t>(n));
      }
    }
  }
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  result.end = Clock::now();
  result.cpu_ms = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
                  static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void must(const std::vector<std::string>& argv) {
  if (const auto r = run(argv); r.exit_code != 0) throw std::runtime_error(argv[0] + " failed: " + r.err);
}

std::vector<std::string> ssh(int port, const std::string& key, const std::string& destination,
                             const std::string& command, bool verbose) {
  const char* const program = "/usr/bin/ssh";
  std::vector<std::string> argv(1, program);
  if (verbose) argv.emplace_back("-v");  // before LogLevel=ERROR: ssh keeps the first log level
  argv.insert(argv.end(), {"-F",        "/dev/null",
                           "-p",        std::to_string(port),
                           "-i",        key,
                           "-o",        "IdentitiesOnly=yes",
                           "-o",        "IdentityAgent=none",
                           "-o",        "StrictHostKeyChecking=no",
                           "-o",        "UserKnownHostsFile=/dev/null",
                           "-o",        "BatchMode=yes",
                           "-o",        "LogLevel=ERROR",
                           destination, command});
  return argv;
}

Sshd::Sshd(const std::string& dir, const std::string& public_key_file, bool with_ecdsa_host_key)
    : port_(test::free_loopback_port()) {
  must({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir + "/host"});
  if (with_ecdsa_host_key) must({"/usr/bin/ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", dir + "/host_ecdsa"});
  std::ofstream(dir + "/authorized_keys") << test::read_file(public_key_file);
  const std::string config = dir + "/sshd_config";
  std::ofstream(config) << "ListenAddress 127.0.0.1\nPort " << port_ << "\nHostKey " << dir << "/host\n"
                        << (with_ecdsa_host_key ? "HostKey " + dir + "/host_ecdsa\n" : "") << "AuthorizedKeysFile "
                        << dir << "/authorized_keys\n"
                        << "UsePAM no\nStrictModes no\nPermitRootLogin yes\nPidFile none\nUseDNS no\n"
                        << "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPrintMotd no\n"
                        << "MaxStartups 100\n";
  log_ = dir + "/sshd.log";
  // Debian's sshd needs its privilege-separation directory (left in place: other programs'
  // sshd may be using it).
  mkdir("/run/sshd", 0755);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const char* argv[] = {"/usr/sbin/sshd", "-D", "-e", "-f", config.c_str(), nullptr};
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start /usr/sbin/sshd");
  if (!test::PgodHarness::wait_for(
          [&]() { return test::read_file(log_).find("Server listening") != std::string::npos; }, 10s))
    throw std::runtime_error("sshd did not start: " + test::read_file(log_));
}

Sshd::~Sshd() {
  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
}

void interleave(int runs, const std::vector<std::function<void()>>& sides) {
  for (int i = 0; i < runs; ++i)
    for (std::size_t j = 0; j < sides.size(); ++j) sides[(i + j) % sides.size()]();
}

double pss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "Pss:") {
      in >> value;
      return value;
    }
  }
  return 0;
}

namespace {

// The fields of /proc/PID/stat after the command name (which may hold spaces): field 3 (state)
// is [0].
std::vector<std::string> stat_fields(pid_t pid) {
  const auto text = test::read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = text.rfind(')');
  std::vector<std::string> fields;
  if (close == std::string::npos) return fields;
  std::istringstream rest(text.substr(close + 1));
  for (std::string field; rest >> field;) fields.push_back(field);
  return fields;
}

bool is_pid(const std::string& name) {
  return !name.empty() && name.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

std::uint64_t cpu_ticks(pid_t pid) {
  const auto fields = stat_fields(pid);
  if (fields.size() < 13) return 0;
  return std::stoull(fields[11]) + std::stoull(fields[12]);  // utime (14), stime (15)
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (!is_pid(name)) continue;
    const auto fields = stat_fields(std::stoi(name));
    if (fields.size() > 1 && fields[1] == std::to_string(parent)) pids.push_back(std::stoi(name));
  }
  return pids;
}

bool runs_as(uid_t uid) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    struct stat info {};
    if (is_pid(entry.path().filename().string()) && stat(entry.path().c_str(), &info) == 0 && info.st_uid == uid)
      return true;
  }
  return false;
}

BenchUsers::BenchUsers(int count, const std::string& prefix) {
  const std::string base = prefix + std::to_string(getpid() % 1000000) + "u";
  try {
    for (int i = 0; i < count; ++i) {
      const auto name = base + std::to_string(i);
      const auto made = test::run_process({"/usr/sbin/useradd", "--system", "--no-create-home", "--home-dir",
                                           "/nonexistent", "--shell", "/usr/sbin/nologin", name});
      struct passwd* entry = made.exit_code == 0 ? getpwnam(name.c_str()) : nullptr;
      if (entry == nullptr) throw std::runtime_error("useradd " + name + " failed: " + made.err);
      users_.push_back({name, entry->pw_uid, entry->pw_gid});
    }
  } catch (...) {
    remove_all();  // the destructor does not run for a constructor that throws
    throw;
  }
}

BenchUsers::~BenchUsers() { remove_all(); }

void BenchUsers::remove_all() {
  for (const auto& user : users_) {
    // userdel refuses while a process of the user lingers (a worker still exiting).
    test::PgodHarness::wait_for([&]() { return !runs_as(user.uid); }, 10s);
    test::run_process({"/usr/sbin/userdel", user.name});
  }
  users_.clear();
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string fixed(double value, int digits) {
  if (std::isnan(value)) return "n/a";
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

}  // namespace pgod::bench
