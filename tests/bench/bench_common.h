// What the benchmark programs share: running a client process and timing it, statistics, the
// OpenSSH sshd reference on loopback, /proc readings (PSS, CPU time), extra test users, and the
// machine-readable lines tests/bench/run.sh collects.
//
// A figure line is `BENCH <key> <sample> [<sample> ...]` (numbers: every sample of this run, so
// the driver can pool the samples of several runs), a text line `BENCHTEXT <key> <text>`.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pgod_harness.h"

namespace pgod::bench {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v);                // NAN when empty
double percentile(std::vector<double> v, double p);  // nearest rank; NAN when empty
double seconds_between(Clock::time_point from, Clock::time_point to);

// The machine-readable lines (stdout, flushed per line).
void figure(const std::string& key, const std::vector<double>& samples);
void figure(const std::string& key, double sample);
void figure_text(const std::string& key, const std::string& text);

// Who a client process runs as, when not as the bench (root): uid, gid, supplementary groups,
// working directory and the whole environment.
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string dir;
  std::vector<std::string> env;
};

// One client process: stdin /dev/null, stdout drained and counted (its first 4 KiB kept), stderr
// kept. Times are taken around the spawn … waitpid.
struct Run {
  int exit_code = -1;
  std::uint64_t bytes = 0;
  std::string head, err;
  Clock::time_point start, first_byte, end;
  double cpu_ms = 0;  // the process's own user + system CPU time (its children's not counted)
  double ms() const { return seconds_between(start, end) * 1000; }
};
Run run(const std::vector<std::string>& argv, const std::optional<RunAs>& as = std::nullopt);
// Runs argv and throws (with its stderr) unless it exits 0.
void must(const std::vector<std::string>& argv);

// OpenSSH's ssh with the same options on both sides (our gateway, the reference sshd).
std::vector<std::string> ssh(int port, const std::string& key, const std::string& destination,
                             const std::string& command, bool verbose = false);

// OpenSSH's sshd on 127.0.0.1, the reference: its own host key, `public_key_file` for root, no
// PAM, MaxStartups 100. Stopped (SIGTERM, by its PID) when the object goes away.
class Sshd {
 public:
  // `with_ecdsa_host_key`: an ECDSA host key beside the ed25519 one (clients still prefer
  // ed25519 unless told otherwise).
  Sshd(const std::string& dir, const std::string& public_key_file, bool with_ecdsa_host_key = false);
  ~Sshd();
  Sshd(const Sshd&) = delete;
  Sshd& operator=(const Sshd&) = delete;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  int port_;
  pid_t pid_ = -1;
  std::string log_;
};

// Calls the sides in turn, `runs` times, each round starting one further along.
void interleave(int runs, const std::vector<std::function<void()>>& sides);

// /proc readings. PSS from smaps_rollup (KiB; 0 when the process is gone). CPU time is utime +
// stime in clock ticks (10 ms here): only totals over many processes or long windows mean much.
double pss_kib(pid_t pid);
std::uint64_t cpu_ticks(pid_t pid);
// Processes whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent);
// Whether any process runs as `uid`.
bool runs_as(uid_t uid);

// `count` extra users (useradd --system, no home), removed with userdel when the object goes
// away; names "<prefix><pid>u<i>".
class BenchUsers {
 public:
  BenchUsers(int count, const std::string& prefix = "pgb");
  ~BenchUsers();
  BenchUsers(const BenchUsers&) = delete;
  BenchUsers& operator=(const BenchUsers&) = delete;
  const std::vector<test::TestUser>& users() const { return users_; }

 private:
  void remove_all();
  std::vector<test::TestUser> users_;
};

std::string first_line(const std::string& text);
std::string fixed(double value, int digits = 1);

}  // namespace pgod::bench
