// Gateway benchmark (not a test): pgod-gateway beside OpenSSH's sshd on loopback, both measured
// in the same run and interleaved (ours, reference, ours, …) so that this noisy machine's drift
// hits both sides alike. Run as root (it creates test users and runs sshd).
//
//   1. Ping round trip: wall time of a whole client process run. Ours: `ssh tester@… a//ping`
//      and `pgoctl … 127.0.0.1:a//ping` to the gateway that pgod runs (ping is answered by the
//      gateway). Reference: `ssh root@… echo pong` to sshd. Same ssh options, same ed25519 key.
//   2. Streamed output: SIZE bytes through one session into a pipe the bench drains and counts
//      (the count must be exact). Ours: `a//logs`, for which the stand-in docker writes SIZE zero
//      bytes (compose process → worker → Cap'n Proto → gateway → SSH). Reference:
//      `head -c SIZE /dev/zero` on sshd. Rates from the first byte to EOF and over the whole
//      run (login included), and the cipher and key exchange each side negotiated (`ssh -v`).
//   3. CLIENTS at once (64 unless told; threads each running ssh), p50 and p99 latency of several rounds
//      pooled, and failures. Ours: `a//ping`; reference: `echo pong`. sshd gets MaxStartups 100;
//      the gateway's defaults admit 64 pending logins from one source (its per-source cap and the
//      start of its early drop), so neither side drops logins by design. In the same rounds, the
//      same crowd of pgoctl processes, and of libssh clients on threads of this process (a login
//      and `a//ping` each, no process start): lighter clients, so more of what is left is the
//      gateway's.
//   3b. Where an OpenSSH client's own CPU goes: `ssh -V` (its start), a login and `a//ping` to
//      the gateway, and a login and `true` to an sshd of its own, once with what the gateway
//      offers (curve25519-sha256, an ssh-ed25519 host key: OpenSSH's portable C) and once with
//      ecdh-sha2-nistp256 and an ecdsa-sha2-nistp256 host key (OpenSSL's code), `runs` each.
//
//   1b. Where a ping's time goes: process start (`pgoctl --version` against `/bin/true`, and a
//      program that only loads libssh), then, from an in-process libssh client speaking as
//      pgoctl does, each step apart: the TCP connect, the version exchange and key exchange,
//      authentication (`none`, then the key), and a command's round trip: `a//ping` (answered by
//      the gateway) and `a//git hash` (answered by the worker, no compose run), each on a channel
//      of its own. Each step twice: warm (the bench's own process, after a first login left out)
//      and first use in a fresh process (this program started again with --cold-phases, a
//      fresh process per login as pgoctl is, though with its own libraries; reading the key
//      file is timed there too).
//
//   4. Push → `up -d` started: a new compose commit in the service's upstream, then, in turn,
//      a signed push hook (GitHub's form) to the gateway's hook listener, or `pgoctl …//git pull`;
//      from just before the trigger until the stand-in docker records `up -d` starting. Each
//      deploy is let finish (its health gate settles) before the next push, and hook pushes are
//      12.5 s apart (the hook's rate limit holds back what comes faster). runs/3 of each.
//
//   build/tests/gateway_bench [runs] [stream-MiB] [stream-runs] [rounds] [clients]   (30 256 5 5 64)
//
// Exit status 1 on a measurement error (a client failed, a byte count was wrong); a missed goal
// (ping ≤ 30 ms, stream ≥ 1.0× sshd) is printed, not failed: this is a benchmark, not a test.
#include <arpa/inet.h>
#include <libssh/libssh.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <latch>
#include <regex>
#include <sstream>
#include <string_view>
#include <thread>
#include <tuple>

#include "bench_common.h"
#include "hook_request.h"
#include "pgod_harness.h"

using namespace pgod::test;
using namespace pgod::bench;
using namespace std::chrono_literals;

namespace {

std::atomic<int> errors = 0;  // measurement errors: failed clients, wrong byte counts (crowd threads too)
void error(const std::string& what) {
  ++errors;
  std::fprintf(stderr, "error: %s\n", what.c_str());
}

// `clients` processes started at once from as many threads; their runs.
std::vector<Run> at_once(int clients, const std::vector<std::string>& argv) {
  std::vector<Run> runs(clients);
  std::latch go(clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i]() {
      go.arrive_and_wait();
      runs[i] = run(argv);
    });
  for (auto& thread : threads) thread.join();
  return runs;
}

// What `ssh -v` says was negotiated: the key exchange, the server-to-client cipher (and MAC).
std::pair<std::string, std::string> negotiated(const Run& verbose) {
  std::smatch kex, cipher;
  static const std::regex kex_line("kex: algorithm: (\\S+)");
  static const std::regex cipher_line("kex: server->client cipher: (\\S+) MAC: (\\S+)");
  if (!std::regex_search(verbose.err, kex, kex_line) || !std::regex_search(verbose.err, cipher, cipher_line))
    return {"?", "?"};
  return {kex[1].str(), cipher[1].str() + (cipher[2] == "<implicit>" ? "" : " + " + cipher[2].str())};
}

std::string machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "?";
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  utsname name{};
  uname(&name);
  return std::to_string(std::thread::hardware_concurrency()) + " cores, " + model + ", Linux " + name.release;
}

void row(const std::string& what, const std::string& ours, const std::string& reference, const std::string& ratio) {
  std::printf("| %s | %s | %s | %s |\n", what.c_str(), ours.c_str(), reference.c_str(), ratio.c_str());
}

// The command line: [runs] [stream-MiB] [stream-runs] [rounds] [clients], and the whole of it for
// the table.
struct Options {
  int runs;
  std::uint64_t stream_bytes;
  int stream_runs;
  int rounds;
  int clients;  // 3.: how many at once
  std::string command;
};

Options parse_arguments(int argc, char** argv) {
  Options options{.runs = argc > 1 ? std::atoi(argv[1]) : 30,
                  .stream_bytes = (argc > 2 ? std::stoull(argv[2]) : 256) << 20,
                  .stream_runs = argc > 3 ? std::atoi(argv[3]) : 5,
                  .rounds = argc > 4 ? std::atoi(argv[4]) : 5,
                  .clients = argc > 5 ? std::atoi(argv[5]) : 64,
                  .command = ""};
  for (int i = 0; i < argc; ++i) options.command += (i ? " " : "") + std::string(argv[i]);
  return options;
}

// The client key (ed25519, no passphrase) in `dir`; its path.
std::string make_key(const std::string& dir) {
  const std::string key = dir + "/key";
  must({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key});
  return key;
}

constexpr const char* kHookSecret = "bench-hook-secret-0123456789";

// Ours: pgod with one service listing the key (and taking push hooks on `hooks_port`), and the
// real gateway on a loopback port, once it answers a//ping; that port.
int start_pgod(PgodHarness& pgod, const std::string& key, int hooks_port) {
  const int port = free_loopback_port();
  pgod.upstream("a").commit({{"ssh/dev.pub", read_file(key + ".pub")}});
  pgod.write_config(PgodHarness::service_toml("a", service_user_a().name, pgod.upstream("a").path(),
                                              std::string("hook_secret = \"") + kHookSecret + "\""));
  pgod.start({"--gateway-program", programs_dir() + "/pgod-gateway", "-s", "127.0.0.1:" + std::to_string(port), "-m",
              "127.0.0.1:" + std::to_string(free_loopback_port()), "--hooks",
              "127.0.0.1:" + std::to_string(hooks_port)});
  if (!pgod.wait_ready({"a"}) ||
      !PgodHarness::wait_for([&]() { return run(ssh(port, key, "tester@127.0.0.1", "a//ping")).exit_code == 0; }))
    throw std::runtime_error("the gateway does not answer a//ping: " + pgod.log());
  return port;
}

// The client commands for both sides: the gateway on `port`, sshd on `sshd_port`, one key.
struct Clients {
  int port;
  int sshd_port;
  std::string key;
  std::vector<std::string> ping_ssh, ping_pgoctl, pong_sshd;
};

Clients clients_for(int port, int sshd_port, const std::string& key) {
  return {.port = port,
          .sshd_port = sshd_port,
          .key = key,
          .ping_ssh = ssh(port, key, "tester@127.0.0.1", "a//ping"),
          .ping_pgoctl = {PGOCTL_BIN, "-p", std::to_string(port), "-i", key, "--insecure-no-host-key-check",
                          "--known-hosts", "/dev/null", "127.0.0.1:a//ping"},
          .pong_sshd = ssh(sshd_port, key, "root@127.0.0.1", "echo pong")};
}

// Whether a client exited 0 with output starting with `expected`.
bool answered(const Run& r, const char* expected) { return r.exit_code == 0 && r.head.rfind(expected, 0) == 0; }

// Whether pgoctl connects (it is measured only then; otherwise "n/a"), and what it said.
struct Pgoctl {
  bool works;
  std::string err;
};

// Throws unless sshd answers; tries pgoctl once.
Pgoctl probe(const Clients& clients) {
  if (const auto pong = run(clients.pong_sshd); !answered(pong, "pong\n"))
    throw std::runtime_error("sshd does not answer echo pong: " + pong.err);
  const auto pgoctl_probe = run(clients.ping_pgoctl);
  const Pgoctl pgoctl{.works = answered(pgoctl_probe, "pong! - "), .err = pgoctl_probe.err};
  if (!pgoctl.works) std::fprintf(stderr, "pgoctl does not connect yet (n/a): %s", pgoctl.err.c_str());
  return pgoctl;
}

// 1. Ping round trip: wall ms of each client run.
struct Ping {
  std::vector<double> ours, pgoctl, reference;
};

Ping measure_ping(int runs, const Clients& clients, const Pgoctl& pgoctl) {
  Ping ping;
  const auto timed = [](const std::vector<std::string>& client, const char* expected, std::vector<double>& into) {
    return [&client, expected, &into]() {
      const auto r = run(client);
      if (!answered(r, expected)) error(client.back() + " failed (exit " + std::to_string(r.exit_code) + "): " + r.err);
      into.push_back(r.ms());
    };
  };
  std::vector<std::function<void()>> sides = {timed(clients.ping_ssh, "pong! - ", ping.ours),
                                              timed(clients.pong_sshd, "pong\n", ping.reference)};
  if (pgoctl.works) sides.push_back(timed(clients.ping_pgoctl, "pong! - ", ping.pgoctl));
  interleave(runs, sides);
  return ping;
}

// 1b. A ping's steps, ms each: one sample per run.
struct Phases {
  std::vector<double> start_pgoctl, start_true, start_libssh, tcp, kex, auth, ping, worker;
  std::vector<double> cold_key, cold_tcp, cold_kex, cold_auth, cold_ping, cold_worker;
};

double ms_since(Clock::time_point& from) {
  const auto now = Clock::now();
  const double ms = seconds_between(from, now) * 1000;
  from = now;
  return ms;
}

// The command's exit status, once it came (both calls wait for it); -1 without one. libssh 0.11
// (Debian 13) deprecates the older call.
int exit_code(ssh_channel channel) {
#if LIBSSH_VERSION_INT >= SSH_VERSION_INT(0, 11, 0)
  std::uint32_t code = 0;
  char* signal = nullptr;
  int core_dumped = 0;
  const int rc = ssh_channel_get_exit_state(channel, &code, &signal, &core_dumped);
  ssh_string_free_char(signal);
  return rc == SSH_OK ? static_cast<int>(code) : -1;
#else
  return ssh_channel_get_exit_status(channel);
#endif
}

// One command on a channel of its own: open, exec, read to EOF; whether it exited 0 with output
// starting with `expected`.
bool channel_round_trip(ssh_session session, const char* command, const char* expected) {
  ssh_channel channel = ssh_channel_new(session);
  if (channel == nullptr) return false;
  std::string out;
  bool ok = ssh_channel_open_session(channel) == SSH_OK && ssh_channel_request_exec(channel, command) == SSH_OK;
  char buffer[4096];
  for (int n; ok && (n = ssh_channel_read(channel, buffer, sizeof buffer, 0)) > 0;) out.append(buffer, n);
  ok = ok && exit_code(channel) == 0 && out.rfind(expected, 0) == 0;
  ssh_channel_close(channel);
  ssh_channel_free(channel);
  return ok;
}

// One login and two commands (only the first unless `ask_worker`), each step timed; false (and a
// measurement error) if one failed.
bool one_phased_ping(int port, ssh_key key, Phases& phases, bool ask_worker = true) {
  auto at = Clock::now();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // As pgoctl does (ctl/client.cc): with Nagle on, a command's small packets wait for delayed ACKs,
  // 40 ms a time.
  const int yes = 1;
  if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    if (fd >= 0) close(fd);
    error("phases: connect failed");
    return false;
  }
  const double tcp = ms_since(at);
  ssh_session session = ssh_new();
  const int no = 0;
  const long timeout = 30;  // seconds: a login that stalls fails instead of holding the bench
  const bool connected = session != nullptr && ssh_options_set(session, SSH_OPTIONS_FD, &fd) == SSH_OK &&
                         ssh_options_set(session, SSH_OPTIONS_HOST, "127.0.0.1") == SSH_OK &&
                         ssh_options_set(session, SSH_OPTIONS_USER, "tester") == SSH_OK &&
                         ssh_options_set(session, SSH_OPTIONS_PROCESS_CONFIG, &no) == SSH_OK &&
                         ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout) == SSH_OK &&
                         ssh_connect(session) == SSH_OK;
  const double kex = ms_since(at);
  const bool authenticated = connected && ssh_userauth_none(session, nullptr) != SSH_AUTH_ERROR &&
                             ssh_userauth_publickey(session, nullptr, key) == SSH_AUTH_SUCCESS;
  const double auth = ms_since(at);
  const bool pinged = authenticated && channel_round_trip(session, "a//ping", "pong! - ");
  const double ping = ms_since(at);
  const bool hashed = pinged && (!ask_worker || channel_round_trip(session, "a//git hash", ""));
  const double worker = ms_since(at);
  if (session != nullptr) {
    // ssh_free alone, no ssh_disconnect: since libssh 0.10 a socket handed over with
    // SSH_OPTIONS_FD stays open after ssh_disconnect (each login would hold a connection, and a
    // slot of the gateway's per-key cap, until the gateway's idle timeout), and closing it here
    // instead could close it twice, since libssh closes it itself on some errors, the sending
    // of the disconnect among them, while another crowd thread may have been given its number.
    // ssh_free closes it if, and only if, libssh still holds it.
    ssh_free(session);
  } else {
    close(fd);
  }
  if (!hashed) {
    error("phases: a step failed (connected " + std::to_string(connected) + ", authenticated " +
          std::to_string(authenticated) + ", ping " + std::to_string(pinged) + ")");
    return false;
  }
  phases.tcp.push_back(tcp);
  phases.kex.push_back(kex);
  phases.auth.push_back(auth);
  phases.ping.push_back(ping);
  phases.worker.push_back(worker);
  return true;
}

Phases measure_phases(int runs, const Clients& clients) {
  Phases phases;
  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_file(clients.key.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
    throw std::runtime_error("cannot read the client key " + clients.key);
  const auto started = [](const std::vector<std::string>& argv, std::vector<double>& into) {
    return [&argv, &into]() {
      const auto r = run(argv);
      if (r.exit_code != 0) error(argv.front() + " failed: " + r.err);
      into.push_back(r.ms());
    };
  };
  const std::vector<std::string> version = {PGOCTL_BIN, "--version"}, bin_true = {"/bin/true"},
                                 libssh_start = {LIBSSH_START_BIN},
                                 cold = {"/proc/self/exe", "--cold-phases", std::to_string(clients.port), clients.key};
  const auto cold_phases = [&]() {
    const auto r = run(cold);
    std::istringstream line(r.head);
    double key_ms = 0, tcp = 0, kex = 0, auth = 0, ping = 0, worker = 0;
    if (r.exit_code != 0 || !(line >> key_ms >> tcp >> kex >> auth >> ping >> worker)) {
      error("--cold-phases failed: " + r.err);
      return;
    }
    for (auto [into, ms] : {std::pair{&phases.cold_key, key_ms},
                            {&phases.cold_tcp, tcp},
                            {&phases.cold_kex, kex},
                            {&phases.cold_auth, auth},
                            {&phases.cold_ping, ping},
                            {&phases.cold_worker, worker}})
      into->push_back(ms);
  };
  Phases first_login;  // warms this process's libssh and OpenSSL up; left out
  one_phased_ping(clients.port, key, first_login);
  interleave(runs, {started(version, phases.start_pgoctl), started(bin_true, phases.start_true),
                    started(libssh_start, phases.start_libssh), [&]() { one_phased_ping(clients.port, key, phases); },
                    cold_phases});
  ssh_key_free(key);
  return phases;
}

// --cold-phases PORT KEY: one phased login in this fresh process, as pgoctl makes one, printed as
// "key tcp kex auth ping worker" (ms).
int cold_phases_main(int port, const char* key_file) {
  auto at = Clock::now();
  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_file(key_file, nullptr, nullptr, nullptr, &key) != SSH_OK) {
    std::fprintf(stderr, "cannot read the client key %s\n", key_file);
    return 1;
  }
  const double key_ms = ms_since(at);
  Phases phases;
  const bool ok = one_phased_ping(port, key, phases);
  ssh_key_free(key);
  if (!ok) return 1;
  std::printf("%.4f %.4f %.4f %.4f %.4f %.4f\n", key_ms, phases.tcp[0], phases.kex[0], phases.auth[0], phases.ping[0],
              phases.worker[0]);
  return 0;
}

// 2. Streamed output: MB/s from the first byte to EOF and over the whole run, and what each side
// negotiated (key exchange, cipher).
struct Stream {
  std::vector<double> ours, reference, ours_whole, reference_whole;
  std::pair<std::string, std::string> ours_algorithms, reference_algorithms;
};

Stream measure_stream(const Options& options, const std::string& standin_dir, const Clients& clients) {
  const std::uint64_t stream_bytes = options.stream_bytes;
  std::ofstream(standin_dir + "/logs-bytes") << stream_bytes << "\n";
  const auto logs = ssh(clients.port, clients.key, "tester@127.0.0.1", "a//logs");
  const auto zeros =
      ssh(clients.sshd_port, clients.key, "root@127.0.0.1", "head -c " + std::to_string(stream_bytes) + " /dev/zero");
  Stream stream;
  const auto streamed = [&](const std::vector<std::string>& client, std::vector<double>& rate,
                            std::vector<double>& whole) {
    return [&]() {
      const auto r = run(client);
      if (r.exit_code != 0 || r.bytes != stream_bytes) {
        error(client.back() + ": exit " + std::to_string(r.exit_code) + ", " + std::to_string(r.bytes) + " of " +
              std::to_string(stream_bytes) + " bytes: " + r.err);
        return;
      }
      rate.push_back(static_cast<double>(r.bytes) / seconds_between(r.first_byte, r.end) / 1e6);
      whole.push_back(static_cast<double>(r.bytes) / seconds_between(r.start, r.end) / 1e6);
    };
  };
  interleave(options.stream_runs, {streamed(logs, stream.ours, stream.ours_whole),
                                   streamed(zeros, stream.reference, stream.reference_whole)});
  stream.ours_algorithms = negotiated(run(ssh(clients.port, clients.key, "tester@127.0.0.1", "a//ping", true)));
  stream.reference_algorithms =
      negotiated(run(ssh(clients.sshd_port, clients.key, "root@127.0.0.1", "echo pong", true)));
  return stream;
}

// 3. `clients` at once: every client's wall ms, pooled over the rounds, and how many failed.
struct Crowd {
  std::vector<double> ours, reference;
  std::vector<double> ours_client_cpu;        // each of our clients' own CPU ms: what the crowd needs of the cores
  std::vector<double> gateway_cpu_per_login;  // per round: the gateway's CPU ms over its logins
  int ours_failed = 0, reference_failed = 0;
  // The same crowd of pgoctl processes, and of libssh clients on threads of this process (a login
  // and `a//ping` each, what pgoctl does, without a process start each): the clients' own cost
  // falls, so more of what is left is the gateway's.
  std::vector<double> pgoctl, pgoctl_client_cpu, in_process;
  int pgoctl_failed = 0, in_process_failed = 0;
};

// Waits (up to 10 s) until the gateway has closed every connection on `port`: the crowds come
// one after another from one source and one key, and a crowd's clients exit before the gateway
// has seen all of them go. Over its per-key cap (64), the next crowd would be refused, and its
// refusals would count against the source.
void wait_until_closed(int port) {
  const auto open_connections = [port]() {
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    int open = 0;
    std::getline(tcp, line);  // the header
    while (std::getline(tcp, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      const auto colon = local.find(':');
      if (colon == std::string::npos || std::stoi(local.substr(colon + 1), nullptr, 16) != port) continue;
      if (state != "0A" && state != "06") ++open;  // neither listening nor in TIME_WAIT
    }
    return open;
  };
  if (!PgodHarness::wait_for([&]() { return open_connections() == 0; }, 10s))
    error("the gateway still holds connections 10 s after a crowd");
}

// `count` logins with `a//ping` at once, each from a thread of this process; their wall ms from
// the common start, and how many failed.
void in_process_at_once(int count, const Clients& clients, std::vector<double>& into, int& failed) {
  std::vector<double> ms(count, -1);
  std::latch go(count);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i)
    threads.emplace_back([&, i]() {
      // Each its own copy of the key, read before the start, as each pgoctl reads its own.
      ssh_key key = nullptr;
      const bool have_key = ssh_pki_import_privkey_file(clients.key.c_str(), nullptr, nullptr, nullptr, &key) == SSH_OK;
      go.arrive_and_wait();
      const auto start = Clock::now();
      Phases phases;
      if (!have_key)
        error("an in-process client cannot read the key " + clients.key);  // else one_phased_ping says why
      else if (one_phased_ping(clients.port, key, phases, false))
        ms[i] = seconds_between(start, Clock::now()) * 1000;
      ssh_key_free(key);
    });
  for (auto& thread : threads) thread.join();
  for (const double one : ms) {
    if (one >= 0)
      into.push_back(one);
    else
      ++failed;
  }
}

Crowd measure_crowd(int rounds, int at_once_count, const Clients& clients, pid_t gateway) {
  Crowd crowd;
  const auto at_once_side = [at_once_count](const std::vector<std::string>& client, const char* expected,
                                            std::vector<double>& into, int& failed, std::vector<double>* cpu) {
    return [&client, expected, &into, &failed, at_once_count, cpu]() {
      for (const auto& r : at_once(at_once_count, client)) {
        into.push_back(r.ms());
        if (cpu != nullptr) cpu->push_back(r.cpu_ms);
        if (!answered(r, expected)) {
          ++failed;
          error(client.back() + " (one of " + std::to_string(at_once_count) + ") failed: exit " +
                std::to_string(r.exit_code) + ": " + first_line(r.err));
        }
      }
    };
  };
  const auto ours = at_once_side(clients.ping_ssh, "pong! - ", crowd.ours, crowd.ours_failed, &crowd.ours_client_cpu);
  // The gateway's own CPU time over the round (clock ticks of 10 ms: a round of 64 logins
  // spans tens of them).
  const auto ours_timed = [&]() {
    const std::uint64_t before = cpu_ticks(gateway);
    ours();
    const std::uint64_t after = cpu_ticks(gateway);
    if (gateway > 0 && after >= before)
      crowd.gateway_cpu_per_login.push_back(static_cast<double>(after - before) * 1000.0 / sysconf(_SC_CLK_TCK) /
                                            at_once_count);
  };
  const auto pgoctl =
      at_once_side(clients.ping_pgoctl, "pong! - ", crowd.pgoctl, crowd.pgoctl_failed, &crowd.pgoctl_client_cpu);
  const auto in_process = [&]() {
    in_process_at_once(at_once_count, clients, crowd.in_process, crowd.in_process_failed);
  };
  const auto after_closed = [&clients](std::function<void()> side) {
    return [&clients, side]() {
      wait_until_closed(clients.port);
      side();
    };
  };
  interleave(rounds, {after_closed(ours_timed), after_closed(pgoctl), after_closed(in_process),
                      at_once_side(clients.pong_sshd, "pong\n", crowd.reference, crowd.reference_failed, nullptr)});
  return crowd;
}

// Where an OpenSSH client's CPU goes (4d): its start, a login to the gateway, and what the
// gateway's algorithms cost it. OpenSSH 9.2 computes curve25519 and ed25519 with its own portable
// C, NIST P-256 with OpenSSL's assembly: the same login to sshd with each pair shows the part of
// the crowd's floor that comes from the algorithms the gateway offers.
struct ClientCost {
  std::vector<double> start, gateway_login, curve25519_login, nistp256_login;
};

ClientCost measure_client_cost(int runs, const Clients& clients, const std::string& dir) {
  // An sshd of its own with an ECDSA host key too; the reference sshd of the other rows keeps
  // its one key.
  if (mkdir(dir.c_str(), 0700) != 0) throw std::runtime_error("cannot create " + dir);
  const Sshd sshd(dir, clients.key + ".pub", true);
  const auto with = [&](const char* kex, const char* host_key) {
    auto argv = ssh(sshd.port(), clients.key, "root@127.0.0.1", "true");
    argv.insert(argv.begin() + 1,
                {"-o", std::string("KexAlgorithms=") + kex, "-o", std::string("HostKeyAlgorithms=") + host_key});
    return argv;
  };
  const std::vector<std::string> version = {"/usr/bin/ssh", "-V"};
  const auto curve25519 = with("curve25519-sha256", "ssh-ed25519");
  const auto nistp256 = with("ecdh-sha2-nistp256", "ecdsa-sha2-nistp256");
  ClientCost cost;
  const auto side = [](const std::vector<std::string>& client, std::vector<double>& into, const char* expected) {
    return [&client, &into, expected]() {
      const auto r = run(client);
      if (r.exit_code != 0 || (expected != nullptr && !answered(r, expected))) {
        error(client.back() + ": exit " + std::to_string(r.exit_code) + ": " + first_line(r.err));
        return;
      }
      into.push_back(r.cpu_ms);
    };
  };
  interleave(runs, {side(version, cost.start, nullptr), side(clients.ping_ssh, cost.gateway_login, "pong! - "),
                    side(curve25519, cost.curve25519_login, nullptr), side(nistp256, cost.nistp256_login, nullptr)});
  return cost;
}

// 4. Push → `up -d` started, through a push hook and through pgoctl's `git pull`.
struct Push {
  std::vector<double> hook, pgoctl;
};

// The t= stamp (ns, realtime) of the last `up -d` the stand-in recorded; 0 when none.
std::int64_t last_up_stamp(const std::string& calls) {
  const auto at = calls.rfind(" up -d");
  if (at == std::string::npos) return 0;
  const auto stamp = calls.find("| t=", at);
  return stamp == std::string::npos ? 0 : std::stoll(calls.substr(stamp + 4));
}

std::int64_t realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Push measure_push(int runs, PgodHarness& pgod, const Clients& clients, int hooks_port) {
  Push push;
  const auto pgoctl_pull = [&]() {
    auto argv = clients.ping_pgoctl;
    argv.back() = "127.0.0.1:a//git pull";
    return argv;
  };
  int serial = 0;
  Clock::time_point last_hook{};
  const auto side = [&](bool through_hook, std::vector<double>& into) {
    return [&, through_hook]() {
      const std::string commit = pgod.upstream("a").commit(
          {{"compose.yaml", "services:\n  web:\n    image: busybox\n    environment:\n      N: \"" +
                                std::to_string(++serial) + "\"\n"}});
      // The hook's rate limit (5 at once, then one per 12 s) would hold a push back: each
      // hook sample waits for its token, so what is measured is the hook, not the limit.
      if (through_hook) std::this_thread::sleep_until(last_hook + 12500ms);
      const std::int64_t before = realtime_ns();
      if (through_hook) {
        last_hook = Clock::now();
        const std::string body = R"({"ref":"refs/heads/main"})";
        const auto reply = http_exchange(
            hooks_port,
            http_post("/hooks/a", body,
                      {"X-GitHub-Event: push", "X-GitHub-Delivery: bench-" + std::to_string(serial),
                       "X-Hub-Signature-256: sha256=" + pgod::gateway::hmac_sha256_hex(kHookSecret, body)}));
        if (reply.status != 202)
          error("the push hook was answered " + std::to_string(reply.status) + ": " + reply.text);
      } else {
        const auto r = run(pgoctl_pull());
        if (r.exit_code != 0) error("pgoctl git pull failed: " + r.err);
      }
      if (!PgodHarness::wait_for([&]() { return last_up_stamp(pgod.calls()) > before; }, 30s)) {
        error("no up -d after the push");
        return;
      }
      into.push_back(static_cast<double>(last_up_stamp(pgod.calls()) - before) / 1e6);
      // The deploy finishes (health gate) before the next push, or the pushes would merge.
      const auto deployed = ssh(clients.port, clients.key, "tester@127.0.0.1", "a//history");
      PgodHarness::wait_for(
          [&]() { return run(deployed).head.find(commit.substr(0, 12) + "  deployed") != std::string::npos; }, 30s);
    };
  };
  interleave(std::max(1, runs / 3), {side(true, push.hook), side(false, push.pgoctl)});
  return push;
}

// The samples, for tests/bench/run.sh (which pools several runs).
void print_figures(const Pgoctl& pgoctl, const Ping& ping, const Stream& stream, const Crowd& crowd,
                   const ClientCost& client_cost, const Options& options) {
  figure("ping_ssh_ms", ping.ours);
  figure("ping_sshd_ms", ping.reference);
  if (pgoctl.works) figure("ping_pgoctl_ms", ping.pgoctl);
  figure("stream_mib", static_cast<double>(options.stream_bytes >> 20));
  figure("stream_ours_mbs", stream.ours);
  figure("stream_sshd_mbs", stream.reference);
  figure("stream_whole_ours_mbs", stream.ours_whole);
  figure("stream_whole_sshd_mbs", stream.reference_whole);
  figure_text("cipher_ours", stream.ours_algorithms.second);
  figure_text("cipher_sshd", stream.reference_algorithms.second);
  figure_text("kex_ours", stream.ours_algorithms.first);
  figure_text("kex_sshd", stream.reference_algorithms.first);
  figure("crowd_ours_ms", crowd.ours);
  figure("crowd_sshd_ms", crowd.reference);
  figure("crowd_failed_ours", crowd.ours_failed);
  figure("crowd_failed_sshd", crowd.reference_failed);
  figure("crowd_clients", options.clients);
  figure("crowd_client_cpu_ms", crowd.ours_client_cpu);
  figure("crowd_gateway_cpu_ms_per_login", crowd.gateway_cpu_per_login);
  figure("crowd_pgoctl_ms", crowd.pgoctl);
  figure("crowd_pgoctl_client_cpu_ms", crowd.pgoctl_client_cpu);
  figure("crowd_failed_pgoctl", crowd.pgoctl_failed);
  figure("crowd_in_process_ms", crowd.in_process);
  figure("crowd_failed_in_process", crowd.in_process_failed);
  figure("ssh_client_start_cpu_ms", client_cost.start);
  figure("ssh_client_gateway_cpu_ms", client_cost.gateway_login);
  figure("ssh_client_curve25519_cpu_ms", client_cost.curve25519_login);
  figure("ssh_client_nistp256_cpu_ms", client_cost.nistp256_login);
  figure("online_cpus", static_cast<double>(std::thread::hardware_concurrency()));
  figure_text("openssh", first_line(run({"/usr/bin/ssh", "-V"}).err));
}

// For people: where the figures come from, then the table (markdown rows).
void print_table(const Pgoctl& pgoctl, const Ping& ping, const Stream& stream, const Crowd& crowd,
                 const Options& options) {
  const double ours = median(ping.ours), reference = median(ping.reference);
  const double stream_ratio = median(stream.ours) / median(stream.reference);
  std::printf("\nmachine: %s\n", machine().c_str());
  std::printf("command: %s   (runs %d, stream %llu MiB x %d, %d rounds of %d clients)\n", options.command.c_str(),
              options.runs, static_cast<unsigned long long>(options.stream_bytes >> 20), options.stream_runs,
              options.rounds, options.clients);
  std::printf("reference: %s, sshd on 127.0.0.1; clients: OpenSSH ssh, ed25519 key\n\n",
              first_line(run({"/usr/bin/ssh", "-V"}).err).c_str());
  row("", "ours (pgod-gateway)", "reference (sshd)", "ours/ref");
  row("---", "---", "---", "---");
  row("ping round trip, ssh: `a//ping` vs `echo pong` (median ms of " + std::to_string(options.runs) + ")", fixed(ours),
      fixed(reference), fixed(ours / reference, 2));
  row("ping round trip, pgoctl: `a//ping` (median ms)", pgoctl.works ? fixed(median(ping.pgoctl)) : "n/a",
      fixed(reference) + " (ssh)", pgoctl.works ? fixed(median(ping.pgoctl) / reference, 2) : "n/a");
  row("stream " + std::to_string(options.stream_bytes >> 20) + " MiB, first byte to EOF (median MB/s of " +
          std::to_string(options.stream_runs) + ")",
      fixed(median(stream.ours)), fixed(median(stream.reference)), fixed(stream_ratio, 2));
  row("stream, whole client run incl. login (median MB/s)", fixed(median(stream.ours_whole)),
      fixed(median(stream.reference_whole)), fixed(median(stream.ours_whole) / median(stream.reference_whole), 2));
  row("cipher negotiated (server to client)", stream.ours_algorithms.second, stream.reference_algorithms.second, "");
  row("key exchange negotiated", stream.ours_algorithms.first, stream.reference_algorithms.first, "");
  const std::string crowd_size = std::to_string(options.rounds) + " rounds pooled";
  row(std::to_string(options.clients) + " at once, p50 ms (" + crowd_size + ")", fixed(percentile(crowd.ours, 0.5)),
      fixed(percentile(crowd.reference, 0.5)),
      fixed(percentile(crowd.ours, 0.5) / percentile(crowd.reference, 0.5), 2));
  row(std::to_string(options.clients) + " at once, p99 ms", fixed(percentile(crowd.ours, 0.99)),
      fixed(percentile(crowd.reference, 0.99)),
      fixed(percentile(crowd.ours, 0.99) / percentile(crowd.reference, 0.99), 2));
  row(std::to_string(options.clients) + " at once, failed clients",
      std::to_string(crowd.ours_failed) + " of " + std::to_string(crowd.ours.size()),
      std::to_string(crowd.reference_failed) + " of " + std::to_string(crowd.reference.size()), "");
  for (const auto& [who, wall, failed] :
       {std::tuple{"pgoctl processes", &crowd.pgoctl, crowd.pgoctl_failed},
        {"libssh clients on threads of one process", &crowd.in_process, crowd.in_process_failed}})
    row(std::to_string(options.clients) + " " + who + " at once, p50 / p99 ms (" + std::to_string(failed) + " failed)",
        fixed(percentile(*wall, 0.5)) + " / " + fixed(percentile(*wall, 0.99)), "", "");
}

// The goals (ping median <= 30 ms, stream >= 1.0x sshd), met or missed, and why pgoctl is n/a.
void print_goals(const Pgoctl& pgoctl, const Ping& ping, const Stream& stream) {
  const double ours = median(ping.ours);
  const double stream_ratio = median(stream.ours) / median(stream.reference);
  std::printf("\ngoals: ping median <= 30 ms: %s (%s ms); stream >= 1.0x sshd: %s (%sx)\n",
              ours <= 30 ? "met" : "MISSED", fixed(ours).c_str(), stream_ratio >= 1.0 ? "met" : "MISSED",
              fixed(stream_ratio, 2).c_str());
  if (!pgoctl.works) std::printf("pgoctl: n/a, it did not connect: %s\n", first_line(pgoctl.err).c_str());
}

// 1b: the samples, and a line for people.
void print_phases(const Phases& phases) {
  const std::pair<const char*, const std::vector<double>*> steps[] = {{"phase_start_pgoctl_ms", &phases.start_pgoctl},
                                                                      {"phase_start_true_ms", &phases.start_true},
                                                                      {"phase_start_libssh_ms", &phases.start_libssh},
                                                                      {"phase_tcp_ms", &phases.tcp},
                                                                      {"phase_kex_ms", &phases.kex},
                                                                      {"phase_auth_ms", &phases.auth},
                                                                      {"phase_ping_ms", &phases.ping},
                                                                      {"phase_worker_ms", &phases.worker},
                                                                      {"phase_cold_key_ms", &phases.cold_key},
                                                                      {"phase_cold_tcp_ms", &phases.cold_tcp},
                                                                      {"phase_cold_kex_ms", &phases.cold_kex},
                                                                      {"phase_cold_auth_ms", &phases.cold_auth},
                                                                      {"phase_cold_ping_ms", &phases.cold_ping},
                                                                      {"phase_cold_worker_ms", &phases.cold_worker}};
  std::string line = "where a ping goes (median ms):";
  for (const auto& [name, samples] : steps) {
    figure(name, *samples);
    line += std::string(" ") + (name + 6) + " " + fixed(median(*samples), 2) + ";";
  }
  std::printf("\n%s\n", line.c_str());
}

// pgod stops, and its processes are waited for: the test users are removed at exit, and userdel
// refuses while any of their processes lingers.
void stop(PgodHarness& pgod) {
  pgod.stop();
  PgodHarness::wait_for([]() { return !runs_as(service_user_a().uid); }, 10s);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string_view(argv[1]) == "--cold-phases") return cold_phases_main(std::atoi(argv[2]), argv[3]);
  const Options options = parse_arguments(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    TempDir dir;
    const std::string key = make_key(dir.path());
    PgodHarness pgod;
    const int hooks_port = free_loopback_port();
    const int port = start_pgod(pgod, key, hooks_port);
    Sshd sshd(dir.path(), key + ".pub");
    const Clients clients = clients_for(port, sshd.port(), key);
    const Pgoctl pgoctl = probe(clients);
    const Ping ping = measure_ping(options.runs, clients, pgoctl);
    const Phases phases = measure_phases(options.runs, clients);
    const Stream stream = measure_stream(options, pgod.standin_dir(), clients);
    const Crowd crowd = measure_crowd(options.rounds, options.clients, clients, gateway_pid(pgod.log()));
    const ClientCost client_cost = measure_client_cost(options.runs, clients, dir.path() + "/client-cost");
    const Push push = measure_push(options.runs, pgod, clients, hooks_port);
    print_figures(pgoctl, ping, stream, crowd, client_cost, options);
    figure("push_hook_up_ms", push.hook);
    print_phases(phases);
    figure("push_pgoctl_up_ms", push.pgoctl);
    std::printf(
        "\npush -> up -d started, median of %zu: through a push hook %s ms, through pgoctl git pull %s ms (%sx)\n",
        push.hook.size(), fixed(median(push.hook)).c_str(), fixed(median(push.pgoctl)).c_str(),
        fixed(median(push.hook) / median(push.pgoctl), 2).c_str());
    print_table(pgoctl, ping, stream, crowd, options);
    print_goals(pgoctl, ping, stream);
    if (errors > 0) std::fprintf(stderr, "pgod's log:\n%s\n", pgod.log().c_str());
    stop(pgod);
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "gateway_bench: %s\n", failure.what());
    return 1;
  }
  if (errors > 0) std::printf("%d measurement errors (see stderr)\n", errors.load());
  return errors > 0 ? 1 : 0;
}
