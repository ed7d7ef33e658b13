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
//   3. 64 clients at once (threads each running ssh), p50 and p99 latency of several rounds
//      pooled, and failures. Ours: `a//ping`; reference: `echo pong`. sshd gets MaxStartups 100,
//      the gateway's default --max-unauthenticated, so neither side drops logins by design.
//
//   build/tests/gateway_bench [runs] [stream-MiB] [stream-runs] [rounds]   (30 256 5 5)
//
// Exit status 1 on a measurement error (a client failed, a byte count was wrong); a missed goal
// (ping ≤ 30 ms, stream ≥ 0.9× sshd) is printed, not failed: this is a benchmark, not a test.
#include <sys/utsname.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <latch>
#include <regex>
#include <thread>

#include "bench_common.h"
#include "pgod_harness.h"

using namespace pgod::test;
using namespace pgod::bench;
using namespace std::chrono_literals;

namespace {

int errors = 0;  // measurement errors: failed clients, wrong byte counts
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

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 30;
  const std::uint64_t stream_bytes = (argc > 2 ? std::stoull(argv[2]) : 256) << 20;
  const int stream_runs = argc > 3 ? std::atoi(argv[3]) : 5;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 5;
  constexpr int kClients = 64;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  try {
    TempDir dir;
    const std::string key = dir.path() + "/key";
    must({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key});

    // Ours: pgod with one service listing the key, and the real gateway on a loopback port.
    PgodHarness pgod;
    const int port = free_loopback_port();
    pgod.upstream("a").commit({{"ssh/dev.pub", read_file(key + ".pub")}});
    pgod.write_config(PgodHarness::service_toml("a", service_user_a().name, pgod.upstream("a").path()));
    pgod.start({"--gateway-program", programs_dir() + "/pgod-gateway", "-s", "127.0.0.1:" + std::to_string(port), "-m",
                "127.0.0.1:" + std::to_string(free_loopback_port())});
    if (!pgod.wait_ready({"a"}) ||
        !PgodHarness::wait_for([&]() { return run(ssh(port, key, "tester@127.0.0.1", "a//ping")).exit_code == 0; }))
      throw std::runtime_error("the gateway does not answer a//ping: " + pgod.log());
    Sshd sshd(dir.path(), key + ".pub");

    const auto ping_ssh = ssh(port, key, "tester@127.0.0.1", "a//ping");
    const std::vector<std::string> ping_pgoctl = {
        PGOCTL_BIN,      "-p",        std::to_string(port), "-i", key, "--insecure-no-host-key-check",
        "--known-hosts", "/dev/null", "127.0.0.1:a//ping"};
    const auto pong_sshd = ssh(sshd.port(), key, "root@127.0.0.1", "echo pong");
    const auto answered = [](const Run& r, const char* expected) {
      return r.exit_code == 0 && r.head.rfind(expected, 0) == 0;
    };
    if (const auto probe = run(pong_sshd); !answered(probe, "pong\n"))
      throw std::runtime_error("sshd does not answer echo pong: " + probe.err);
    const auto pgoctl_probe = run(ping_pgoctl);
    const bool pgoctl_works = answered(pgoctl_probe, "pong! - ");
    if (!pgoctl_works) std::fprintf(stderr, "pgoctl does not connect yet (n/a): %s", pgoctl_probe.err.c_str());

    // 1. Ping round trip.
    std::vector<double> ours_ping, pgoctl_ping, reference_ping;
    const auto timed = [&](const std::vector<std::string>& client, const char* expected, std::vector<double>& into) {
      return [&, expected]() {
        const auto r = run(client);
        if (!answered(r, expected))
          error(client.back() + " failed (exit " + std::to_string(r.exit_code) + "): " + r.err);
        into.push_back(r.ms());
      };
    };
    std::vector<std::function<void()>> sides = {timed(ping_ssh, "pong! - ", ours_ping),
                                                timed(pong_sshd, "pong\n", reference_ping)};
    if (pgoctl_works) sides.push_back(timed(ping_pgoctl, "pong! - ", pgoctl_ping));
    interleave(runs, sides);

    // 2. Streamed output.
    std::ofstream(pgod.standin_dir() + "/logs-bytes") << stream_bytes << "\n";
    const auto logs = ssh(port, key, "tester@127.0.0.1", "a//logs");
    const auto zeros =
        ssh(sshd.port(), key, "root@127.0.0.1", "head -c " + std::to_string(stream_bytes) + " /dev/zero");
    std::vector<double> ours_stream, reference_stream, ours_whole, reference_whole;
    const auto streamed = [&](const std::vector<std::string>& client, std::vector<double>& stream,
                              std::vector<double>& whole) {
      return [&]() {
        const auto r = run(client);
        if (r.exit_code != 0 || r.bytes != stream_bytes) {
          error(client.back() + ": exit " + std::to_string(r.exit_code) + ", " + std::to_string(r.bytes) + " of " +
                std::to_string(stream_bytes) + " bytes: " + r.err);
          return;
        }
        stream.push_back(static_cast<double>(r.bytes) / seconds_between(r.first_byte, r.end) / 1e6);
        whole.push_back(static_cast<double>(r.bytes) / seconds_between(r.start, r.end) / 1e6);
      };
    };
    interleave(stream_runs,
               {streamed(logs, ours_stream, ours_whole), streamed(zeros, reference_stream, reference_whole)});
    const auto ours_algorithms = negotiated(run(ssh(port, key, "tester@127.0.0.1", "a//ping", true)));
    const auto reference_algorithms = negotiated(run(ssh(sshd.port(), key, "root@127.0.0.1", "echo pong", true)));

    // 3. 64 clients at once.
    std::vector<double> ours_crowd, reference_crowd;
    int ours_failed = 0, reference_failed = 0;
    const auto crowd = [&](const std::vector<std::string>& client, const char* expected, std::vector<double>& into,
                           int& failed) {
      return [&, expected]() {
        for (const auto& r : at_once(kClients, client)) {
          into.push_back(r.ms());
          if (!answered(r, expected)) {
            ++failed;
            error(client.back() + " (one of " + std::to_string(kClients) + ") failed: exit " +
                  std::to_string(r.exit_code) + ": " + first_line(r.err));
          }
        }
      };
    };
    interleave(rounds, {crowd(ping_ssh, "pong! - ", ours_crowd, ours_failed),
                        crowd(pong_sshd, "pong\n", reference_crowd, reference_failed)});

    // The samples, for tests/bench/run.sh (which pools several runs), then the table.
    figure("ping_ssh_ms", ours_ping);
    figure("ping_sshd_ms", reference_ping);
    if (pgoctl_works) figure("ping_pgoctl_ms", pgoctl_ping);
    figure("stream_mib", static_cast<double>(stream_bytes >> 20));
    figure("stream_ours_mbs", ours_stream);
    figure("stream_sshd_mbs", reference_stream);
    figure("stream_whole_ours_mbs", ours_whole);
    figure("stream_whole_sshd_mbs", reference_whole);
    figure_text("cipher_ours", ours_algorithms.second);
    figure_text("cipher_sshd", reference_algorithms.second);
    figure_text("kex_ours", ours_algorithms.first);
    figure_text("kex_sshd", reference_algorithms.first);
    figure("crowd_ours_ms", ours_crowd);
    figure("crowd_sshd_ms", reference_crowd);
    figure("crowd_failed_ours", ours_failed);
    figure("crowd_failed_sshd", reference_failed);
    figure_text("openssh", first_line(run({"/usr/bin/ssh", "-V"}).err));

    const double ping = median(ours_ping), reference = median(reference_ping);
    const double stream_ratio = median(ours_stream) / median(reference_stream);
    std::printf("\nmachine: %s\n", machine().c_str());
    std::printf("command: %s   (runs %d, stream %llu MiB x %d, %d rounds of %d clients)\n", command.c_str(), runs,
                static_cast<unsigned long long>(stream_bytes >> 20), stream_runs, rounds, kClients);
    std::printf("reference: %s, sshd on 127.0.0.1; clients: OpenSSH ssh, ed25519 key\n\n",
                first_line(run({"/usr/bin/ssh", "-V"}).err).c_str());
    row("", "ours (pgod-gateway)", "reference (sshd)", "ours/ref");
    row("---", "---", "---", "---");
    row("ping round trip, ssh: `a//ping` vs `echo pong` (median ms of " + std::to_string(runs) + ")", fixed(ping),
        fixed(reference), fixed(ping / reference, 2));
    row("ping round trip, pgoctl: `a//ping` (median ms)", pgoctl_works ? fixed(median(pgoctl_ping)) : "n/a",
        fixed(reference) + " (ssh)", pgoctl_works ? fixed(median(pgoctl_ping) / reference, 2) : "n/a");
    row("stream " + std::to_string(stream_bytes >> 20) + " MiB, first byte to EOF (median MB/s of " +
            std::to_string(stream_runs) + ")",
        fixed(median(ours_stream)), fixed(median(reference_stream)), fixed(stream_ratio, 2));
    row("stream, whole client run incl. login (median MB/s)", fixed(median(ours_whole)), fixed(median(reference_whole)),
        fixed(median(ours_whole) / median(reference_whole), 2));
    row("cipher negotiated (server to client)", ours_algorithms.second, reference_algorithms.second, "");
    row("key exchange negotiated", ours_algorithms.first, reference_algorithms.first, "");
    const std::string crowd_size = std::to_string(rounds) + " rounds pooled";
    row(std::to_string(kClients) + " at once, p50 ms (" + crowd_size + ")", fixed(percentile(ours_crowd, 0.5)),
        fixed(percentile(reference_crowd, 0.5)),
        fixed(percentile(ours_crowd, 0.5) / percentile(reference_crowd, 0.5), 2));
    row(std::to_string(kClients) + " at once, p99 ms", fixed(percentile(ours_crowd, 0.99)),
        fixed(percentile(reference_crowd, 0.99)),
        fixed(percentile(ours_crowd, 0.99) / percentile(reference_crowd, 0.99), 2));
    row(std::to_string(kClients) + " at once, failed clients",
        std::to_string(ours_failed) + " of " + std::to_string(ours_crowd.size()),
        std::to_string(reference_failed) + " of " + std::to_string(reference_crowd.size()), "");
    std::printf("\ngoals: ping median <= 30 ms: %s (%s ms); stream >= 0.9x sshd: %s (%sx)\n",
                ping <= 30 ? "met" : "MISSED", fixed(ping).c_str(), stream_ratio >= 0.9 ? "met" : "MISSED",
                fixed(stream_ratio, 2).c_str());
    if (!pgoctl_works) std::printf("pgoctl: n/a, it did not connect: %s\n", first_line(pgoctl_probe.err).c_str());
    pgod.stop();
    // The test users are removed at exit: userdel refuses while any of their processes lingers.
    PgodHarness::wait_for([]() { return !runs_as(service_user_a().uid); }, 10s);
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "gateway_bench: %s\n", failure.what());
    return 1;
  }
  if (errors > 0) std::printf("%d measurement errors (see stderr)\n", errors);
  return errors > 0 ? 1 : 0;
}
