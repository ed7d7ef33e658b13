// Gateway load benchmark (not a test): pgod-gateway, started by pgod with its default limits, under
// hostile clients, while a legitimate user keeps logging in. Run as root (it creates test users
// and runs pgod).
//
//   1. Reference: PINGS × `pgoctl … 127.0.0.1:a//ping`, one after another, no attack; each
//      timed as a whole client process run (wall time), each bounded to 10 s.
//   2. The flood, all at once, from the attacker sources 127.0.0.2 … 127.0.0.51 (each client
//      socket bound to its source before connect):
//        - 1000 silent holders: TCP connections that never send a byte, 20 per source, each
//          reconnected 100 ms after the gateway closes it;
//        - 100 slow-loris clients: "SSH-2.0-x\r\n" one byte every 500 ms, then the first bytes of
//          a binary packet at the same pace, reconnected likewise;
//        - 2 threads of DH-only libssh clients connecting over and over (20 ms apart), offering
//          only finite-field Diffie-Hellman key exchanges (the gateway should refuse them at
//          negotiation; a completed one is counted);
//        - 20 key holders (2 threads of 10 libssh sessions): they log in with a second key the
//          service lists (not the legitimate client's, so per-key limits aimed at them do not
//          refuse that client by design), open a session channel, send no command and hold it;
//          reconnected when the gateway closes them.
//      After a ramp-up the same pgoctl pings run from 127.0.0.1, spread over at least
//      MIN-ATTACK seconds; the attack ends with the last ping or after MAX-ATTACK seconds.
//   3. After the attack: 20 pings in a row must succeed (the gateway keeps serving).
//   Throughout, every 100 ms, the gateway's RSS (/proc/PID/status): idle, peak under attack; and
//   its listening socket's accept queue (/proc/net/tcp). Besides: what the attackers saw
//   (connections opened, closed by the gateway, how long they lived; key exchanges refused or
//   completed), the gateway's CPU during the attack, its rejection counters (/metrics), the
//   host's accept-queue drops (/proc/net/netstat) and whether pgod had to restart the gateway.
//
//   build/tests/gateway_flood_bench [pings] [ramp-s] [min-attack-s] [max-attack-s] [attacks]
//                                   (300 10 60 300 all)
//
//   attacks: "all", or some of silent,loris,dh,holders (comma-separated): to see what one costs
//   alone. tests/bench/run.sh runs all of them.
//
// Exit status 1 on a measurement error (pgod or the gateway would not start, an attacker thread
// failed or left sockets open, the reference pings failed); missed goals (≥ 99 % logins succeed under attack, p99 <
// 1 s, peak RSS < 256 MiB, serving afterwards) are printed, not failed: this is a benchmark.
#include <arpa/inet.h>
#include <libssh/libssh.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "bench_common.h"
#include "pgod_harness.h"
#include "unique_fd.h"

using namespace pgod::test;
using namespace pgod::bench;
using namespace std::chrono_literals;
using pgod::UniqueFd;

namespace {

int errors = 0;  // measurement errors
void error(const std::string& what) {
  ++errors;
  std::fprintf(stderr, "error: %s\n", what.c_str());
}

// The attack.
constexpr int kSources = 50;  // 127.0.0.2 … 127.0.0.51
constexpr int kSilent = 1000;
constexpr int kLoris = 100;
constexpr int kDhThreads = 2;
constexpr int kHolderThreads = 2;
constexpr int kHoldersPerThread = 10;
constexpr auto kLorisStep = 500ms;
constexpr auto kReconnectPause = 100ms;  // raw sockets, after the gateway closed one
constexpr auto kDhPause = 20ms;          // between two DH-only attempts of one thread
constexpr auto kHolderRetry = 200ms;     // a key holder whose login or channel failed
constexpr auto kConnectLimit = 5s;       // a TCP connect that takes longer is given up
constexpr long kSshTimeoutSeconds = 5;   // libssh's own, per blocking call
constexpr const char* kDhOnly =
    "diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,diffie-hellman-group-exchange-sha256";
// The legitimate side.
constexpr int kPingTimeoutSeconds = 10;
constexpr int kServingPings = 20;
// Goals.
constexpr double kSuccessGoal = 0.99;
constexpr double kP99GoalMs = 1000;
constexpr double kRssGoalMib = 256;

std::string fixed_pct(double fraction) { return fixed(100 * fraction) + " %"; }

sockaddr_in loopback(int last_octet, int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl((127u << 24) | static_cast<unsigned>(last_octet));
  return address;
}

// A non-blocking TCP socket from attacker source `source` (0 … kSources-1) to 127.0.0.1:`port`,
// its connect started (or done). Empty when that fails at once.
UniqueFd start_connect(int source, int port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  // The port is chosen at connect, by the whole 4-tuple: churn from one source needs no free
  // port of its own per connection.
  const int yes = 1;
  setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &yes, sizeof yes);
  const sockaddr_in from = loopback(2 + source, 0), to = loopback(1, port);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&from), sizeof from) != 0) return {};
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS) return {};
  return fd;
}

// The same, connected, or empty after kConnectLimit.
UniqueFd connect_from(int source, int port) {
  UniqueFd fd = start_connect(source, port);
  if (!fd) return fd;
  pollfd watched{fd.get(), POLLOUT, 0};
  if (poll(&watched, 1, static_cast<int>(std::chrono::milliseconds(kConnectLimit).count())) != 1) return {};
  int status = 0;
  socklen_t length = sizeof status;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &status, &length) != 0 || status != 0) return {};
  return fd;
}

// Which attackers run (all, unless the command line names some: to see what each costs alone).
struct Attacks {
  bool silent = true, loris = true, dh = true, holders = true;
  std::string text() const {
    if (silent && loris && dh && holders) return "all";
    std::string out;
    for (const auto& [on, name] :
         {std::pair{silent, "silent"}, std::pair{loris, "loris"}, std::pair{dh, "dh"}, std::pair{holders, "holders"}})
      if (on) out += (out.empty() ? "" : ",") + std::string(name);
    return out.empty() ? "none" : out;
  }
};

Attacks attacks_from(const std::string& list) {
  if (list == "all") return {};
  Attacks attacks{.silent = false, .loris = false, .dh = false, .holders = false};
  std::istringstream names(list);
  for (std::string name; std::getline(names, name, ',');) {
    if (name == "silent")
      attacks.silent = true;
    else if (name == "loris")
      attacks.loris = true;
    else if (name == "dh")
      attacks.dh = true;
    else if (name == "holders")
      attacks.holders = true;
    else
      throw std::runtime_error("unknown attack \"" + name + "\" (all, or some of silent,loris,dh,holders)");
  }
  return attacks;
}

// --- the raw-socket attackers: silent holders and slow-loris clients, one thread, poll() ---

struct RawStats {
  std::uint64_t started = 0, refused = 0, established = 0, greeted = 0, closed = 0, open_at_end = 0;
  std::vector<double> lifetime_ms;  // established → closed by the gateway
};

struct RawSlot {
  bool loris = false;
  int source = 0;
  UniqueFd fd;
  bool connecting = false, greeted = false;
  Clock::time_point since, next;  // since: connect started or done; next: reconnect or next byte
  std::size_t sent = 0;
};

// Slow-loris byte `i`: the banner, then a binary packet's length (256), padding length and
// SSH_MSG_KEXINIT, then zeros.
char loris_byte(std::size_t i) {
  static const std::string banner = "SSH-2.0-x\r\n";
  static const char packet[] = {0, 0, 1, 0, 4, 20};
  if (i < banner.size()) return banner[i];
  i -= banner.size();
  return i < sizeof packet ? packet[i] : 0;
}

class RawAttack {
 public:
  RawAttack(int port, const Attacks& attacks, const std::atomic<bool>& stop) : port_(port), stop_(stop) {
    for (int i = 0; i < kSilent + kLoris; ++i) {
      if (!(i < kSilent ? attacks.silent : attacks.loris)) continue;
      slots_.emplace_back();
      slots_.back().loris = i >= kSilent;
      slots_.back().source = i % kSources;
    }
  }

  // Runs until `stop`; then closes every socket.
  void run() {
    std::vector<pollfd> fds;
    std::vector<std::size_t> index;
    while (!stop_.load()) {
      const auto now = Clock::now();
      for (auto& slot : slots_) {
        if (!slot.fd && now >= slot.next) open(slot, now);
        if (slot.fd && slot.connecting && now - slot.since > kConnectLimit) lost(slot, now, false);
        if (slot.fd && !slot.connecting && slot.loris && now >= slot.next) drip(slot, now);
      }
      fds.clear();
      index.clear();
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        if (!slots_[i].fd) continue;
        fds.push_back({slots_[i].fd.get(), static_cast<short>(slots_[i].connecting ? POLLOUT : POLLIN), 0});
        index.push_back(i);
      }
      if (poll(fds.data(), fds.size(), 50) < 0 && errno != EINTR) throw std::runtime_error("poll: " + errno_text());
      const auto after = Clock::now();
      for (std::size_t i = 0; i < fds.size(); ++i)
        if (fds[i].revents != 0) ready(slots_[index[i]], fds[i].revents, after);
    }
    for (auto& slot : slots_)
      if (slot.fd && !slot.connecting) ++stats(slot).open_at_end;
    for (auto& slot : slots_) slot.fd.reset();
  }

  const RawStats& silent() const { return silent_; }
  const RawStats& loris() const { return loris_; }

 private:
  static std::string errno_text() { return std::strerror(errno); }
  RawStats& stats(const RawSlot& slot) { return slot.loris ? loris_ : silent_; }

  void open(RawSlot& slot, Clock::time_point now) {
    ++stats(slot).started;
    slot.fd = start_connect(slot.source, port_);
    slot.connecting = true;
    slot.greeted = false;
    slot.sent = 0;
    slot.since = now;
    if (!slot.fd) lost(slot, now, false);
  }

  // The connection is gone: closed by the gateway (`closed`), or refused or timed out before it
  // was established.
  void lost(RawSlot& slot, Clock::time_point now, bool closed) {
    auto& s = stats(slot);
    if (closed) {
      ++s.closed;
      s.lifetime_ms.push_back(seconds_between(slot.since, now) * 1000);
    } else {
      ++s.refused;
    }
    slot.fd.reset();
    slot.next = now + kReconnectPause;
  }

  void drip(RawSlot& slot, Clock::time_point now) {
    const char byte = loris_byte(slot.sent);
    if (send(slot.fd.get(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
      ++slot.sent;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      lost(slot, now, true);
      return;
    }
    slot.next = now + kLorisStep;
  }

  void ready(RawSlot& slot, short revents, Clock::time_point now) {
    if (slot.connecting) {
      int status = 0;
      socklen_t length = sizeof status;
      if (getsockopt(slot.fd.get(), SOL_SOCKET, SO_ERROR, &status, &length) != 0 || status != 0) {
        lost(slot, now, false);
        return;
      }
      slot.connecting = false;
      slot.since = now;
      slot.next = now + kLorisStep;
      ++stats(slot).established;
      return;
    }
    // What the gateway says (its banner) is read and dropped; the end of the stream is the close.
    char buffer[4096];
    for (;;) {
      const ssize_t n = recv(slot.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        if (!slot.greeted) ++stats(slot).greeted;
        slot.greeted = true;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      lost(slot, now, true);  // EOF or reset
      return;
    }
    if ((revents & (POLLHUP | POLLERR)) != 0) lost(slot, now, true);
  }

  int port_;
  const std::atomic<bool>& stop_;
  std::vector<RawSlot> slots_;
  RawStats silent_, loris_;
};

// --- the libssh attackers ---

struct SessionFree {
  void operator()(ssh_session session) const {
    ssh_disconnect(session);
    ssh_free(session);
  }
};
using Session = std::unique_ptr<ssh_session_struct, SessionFree>;

// A libssh client session from attacker source `source` to 127.0.0.1:`port`, not connected yet.
// libssh makes the socket itself (bound to the source) and so closes it: one handed to it with
// SSH_OPTIONS_FD stays open after ssh_disconnect in libssh 0.10.
Session client_session(int source, int port, const char* key_exchange) {
  Session session(ssh_new());
  if (!session) throw std::runtime_error("ssh_new: out of memory");
  const std::string from = "127.0.0." + std::to_string(2 + source);
  const bool process_config = false;
  const unsigned port_number = static_cast<unsigned>(port);
  const long timeout = kSshTimeoutSeconds;
  const int no_log = SSH_LOG_NOLOG;
  if (ssh_options_set(session.get(), SSH_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_options_set(session.get(), SSH_OPTIONS_HOST, "127.0.0.1") != SSH_OK ||
      ssh_options_set(session.get(), SSH_OPTIONS_PORT, &port_number) != SSH_OK ||
      ssh_options_set(session.get(), SSH_OPTIONS_BINDADDR, from.c_str()) != SSH_OK ||
      ssh_options_set(session.get(), SSH_OPTIONS_USER, "attacker") != SSH_OK ||
      ssh_options_set(session.get(), SSH_OPTIONS_TIMEOUT, &timeout) != SSH_OK ||
      ssh_options_set(session.get(), SSH_OPTIONS_LOG_VERBOSITY, &no_log) != SSH_OK ||
      (key_exchange != nullptr && ssh_options_set(session.get(), SSH_OPTIONS_KEY_EXCHANGE, key_exchange) != SSH_OK))
    throw std::runtime_error(std::string("ssh_options_set: ") + ssh_get_error(session.get()));
  return session;
}

struct DhStats {
  std::uint64_t attempts = 0, refused = 0, dropped = 0, completed = 0;
  std::vector<double> attempt_ms;  // ssh_connect: TCP connect and key exchange
  std::string refused_example, dropped_example;
};

// One DH-only thread: connect, offer only DH, see what happens, again, from source to source.
void dh_attack(int thread, int port, const std::atomic<bool>& stop, DhStats& stats) {
  for (int i = thread; !stop.load(); ++i) {
    ++stats.attempts;
    Session session = client_session(i % kSources, port, kDhOnly);
    const auto start = Clock::now();
    const int rc = ssh_connect(session.get());
    stats.attempt_ms.push_back(seconds_between(start, Clock::now()) * 1000);
    const std::string why = rc == SSH_OK ? "" : ssh_get_error(session.get());
    if (rc == SSH_OK) {
      ++stats.completed;
    } else if (why.find("no match for method") != std::string::npos) {
      ++stats.refused;
      if (stats.refused_example.empty()) stats.refused_example = why;
    } else {
      ++stats.dropped;
      if (stats.dropped_example.empty()) stats.dropped_example = why;
    }
    session.reset();
    std::this_thread::sleep_for(kDhPause);
  }
}

struct HolderStats {
  std::uint64_t attempts = 0, kex_failed = 0, auth_refused = 0, channel_refused = 0, held = 0, closed = 0,
                held_at_end = 0;
  std::vector<double> hold_ms;  // channel open → the gateway closed it
  std::string failure_example;
};

struct Holder {
  Session session;
  ssh_channel channel = nullptr;
  Clock::time_point since, retry;
};

// Logs in with `key` from the next source and opens a session channel; false (counted) when any
// step fails.
bool hold(Holder& holder, int source, int port, ssh_key key, HolderStats& stats) {
  ++stats.attempts;
  Session session = client_session(source, port, nullptr);
  const auto failed = [&](std::uint64_t& counter) {
    ++counter;
    if (stats.failure_example.empty()) stats.failure_example = ssh_get_error(session.get());
    return false;
  };
  if (ssh_connect(session.get()) != SSH_OK) return failed(stats.kex_failed);
  // "none" first: libssh then signs with what the server takes.
  if (ssh_userauth_none(session.get(), nullptr) == SSH_AUTH_ERROR) return failed(stats.auth_refused);
  if (ssh_userauth_publickey(session.get(), nullptr, key) != SSH_AUTH_SUCCESS) return failed(stats.auth_refused);
  ssh_channel channel = ssh_channel_new(session.get());
  if (channel == nullptr) return failed(stats.channel_refused);
  if (ssh_channel_open_session(channel) != SSH_OK) {
    ssh_channel_free(channel);
    return failed(stats.channel_refused);
  }
  ++stats.held;
  holder.session = std::move(session);
  holder.channel = channel;
  holder.since = Clock::now();
  return true;
}

void release(Holder& holder) {
  if (holder.channel != nullptr) ssh_channel_free(holder.channel);
  holder.channel = nullptr;
  holder.session.reset();
}

// One key-holder thread: kHoldersPerThread sessions, each held until the gateway closes it.
void holder_attack(int thread, int port, const std::string& key_file, const std::atomic<bool>& stop,
                   HolderStats& stats) {
  ssh_key raw = nullptr;
  if (ssh_pki_import_privkey_file(key_file.c_str(), nullptr, nullptr, nullptr, &raw) != SSH_OK)
    throw std::runtime_error("cannot read the key holders' key " + key_file);
  const std::unique_ptr<ssh_key_struct, void (*)(ssh_key)> key(raw, ssh_key_free);
  std::vector<Holder> holders(kHoldersPerThread);
  for (int round = thread; !stop.load(); ++round) {
    for (auto& holder : holders) {
      if (stop.load()) break;
      const auto now = Clock::now();
      if (!holder.session) {
        if (now >= holder.retry && !hold(holder, round % kSources, port, key.get(), stats))
          holder.retry = Clock::now() + kHolderRetry;
        continue;
      }
      // Reads what arrived (the gateway's close, a disconnect) without sending anything.
      const int rc = ssh_channel_poll_timeout(holder.channel, 0, 0);
      if (rc == SSH_ERROR || rc == SSH_EOF || ssh_channel_is_closed(holder.channel) != 0 ||
          ssh_is_connected(holder.session.get()) == 0) {
        ++stats.closed;
        stats.hold_ms.push_back(seconds_between(holder.since, now) * 1000);
        release(holder);
      }
    }
    std::this_thread::sleep_for(100ms);
  }
  for (auto& holder : holders) {
    if (holder.session) ++stats.held_at_end;
    release(holder);
  }
}

// Every attacker thread, started at once, stopped (and every socket closed) by stop() or on
// destruction.
class Attack {
 public:
  Attack(int port, const Attacks& attacks, const std::string& holder_key)
      : raw_(port, attacks, stop_), dh_(kDhThreads), holders_(kHolderThreads) {
    if (attacks.silent || attacks.loris)
      threads_.emplace_back([this]() { guarded("raw sockets", [this]() { raw_.run(); }); });
    for (int i = 0; attacks.dh && i < kDhThreads; ++i)
      threads_.emplace_back([this, i, port]() { guarded("DH-only", [&]() { dh_attack(i, port, stop_, dh_[i]); }); });
    for (int i = 0; attacks.holders && i < kHolderThreads; ++i)
      threads_.emplace_back([this, i, port, holder_key]() {
        guarded("key holders", [&]() { holder_attack(i, port, holder_key, stop_, holders_[i]); });
      });
  }
  ~Attack() { stop(); }
  Attack(const Attack&) = delete;
  Attack& operator=(const Attack&) = delete;

  void stop() {
    stop_.store(true);
    for (auto& thread : threads_)
      if (thread.joinable()) thread.join();
  }
  // After stop(): what each attacker saw, and the threads' failures.
  const RawAttack& raw() const { return raw_; }
  DhStats dh() const {
    DhStats all;
    for (const auto& d : dh_) {
      all.attempts += d.attempts;
      all.refused += d.refused;
      all.dropped += d.dropped;
      all.completed += d.completed;
      all.attempt_ms.insert(all.attempt_ms.end(), d.attempt_ms.begin(), d.attempt_ms.end());
      if (all.refused_example.empty()) all.refused_example = d.refused_example;
      if (all.dropped_example.empty()) all.dropped_example = d.dropped_example;
    }
    return all;
  }
  HolderStats holders() const {
    HolderStats all;
    for (const auto& h : holders_) {
      all.attempts += h.attempts;
      all.kex_failed += h.kex_failed;
      all.auth_refused += h.auth_refused;
      all.channel_refused += h.channel_refused;
      all.held += h.held;
      all.closed += h.closed;
      all.held_at_end += h.held_at_end;
      all.hold_ms.insert(all.hold_ms.end(), h.hold_ms.begin(), h.hold_ms.end());
      if (all.failure_example.empty()) all.failure_example = h.failure_example;
    }
    return all;
  }
  std::vector<std::string> failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }

 private:
  void guarded(const char* what, const std::function<void()>& body) {
    try {
      body();
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex_);
      failures_.push_back(std::string(what) + ": " + e.what());
    }
  }

  std::atomic<bool> stop_{false};
  RawAttack raw_;
  std::vector<DhStats> dh_;
  std::vector<HolderStats> holders_;
  mutable std::mutex mutex_;
  std::vector<std::string> failures_;
  std::vector<std::thread> threads_;  // last: started after everything they use exists
};

// --- the gateway process: its PID, RSS sampled every 100 ms ---

// Connections waiting in the kernel's accept queue of the listening socket on 127.0.0.1:`port`
// (LISTEN's rx_queue in /proc/net/tcp); -1 when not found.
long accept_queue(int port) {
  std::istringstream table(read_file("/proc/net/tcp"));
  std::string line;
  char wanted[16];
  std::snprintf(wanted, sizeof wanted, ":%04X", static_cast<unsigned>(port));
  std::getline(table, line);  // the heading
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues;
    if (!(fields >> slot >> local >> remote >> state >> queues) || state != "0A") continue;
    if (local.size() < 5 || local.compare(local.size() - 5, 5, wanted) != 0) continue;
    return std::stol(queues.substr(queues.find(':') + 1), nullptr, 16);
  }
  return -1;
}

// The kernel's TcpExt counters ListenOverflows + ListenDrops (all sockets of the host): a
// connection dropped because an accept queue was full.
double listen_drops() {
  std::istringstream netstat(read_file("/proc/net/netstat"));
  std::string names, values;
  while (std::getline(netstat, names) && std::getline(netstat, values)) {
    if (names.rfind("TcpExt:", 0) != 0) continue;
    std::istringstream n(names), v(values);
    std::string name, value;
    double total = 0;
    while (n >> name && v >> value)
      if (name == "ListenOverflows" || name == "ListenDrops") total += std::stod(value);
    return total;
  }
  return NAN;
}

enum Phase { kIdle, kReference, kRamp, kAttack, kAfter, kPhases };

// Every 100 ms: the gateway's RSS (its PID from pgod's log, again after a restart) and its
// listening socket's accept queue, filed under the phase of the run.
class GatewaySampler {
 public:
  GatewaySampler(const PgodHarness& pgod, int port) : pgod_(pgod), port_(port), thread_([this]() { loop(); }) {}
  ~GatewaySampler() {
    stop_.store(true);
    thread_.join();
  }
  GatewaySampler(const GatewaySampler&) = delete;
  GatewaySampler& operator=(const GatewaySampler&) = delete;

  void phase(Phase p) { phase_.store(p); }
  // RSS samples (KiB) of one phase, and the longest accept queue seen in it.
  std::vector<double> rss(Phase p) const {
    std::lock_guard lock(mutex_);
    return rss_[p];
  }
  long longest_queue(Phase p) const {
    std::lock_guard lock(mutex_);
    return queue_[p];
  }

 private:
  void loop() {
    pid_t pid = 0;
    while (!stop_.load()) {
      long kib = pid > 0 ? rss_kib(pid) : -1;
      if (kib < 0) {  // not known yet, or restarted by pgod
        pid = gateway_pid(pgod_.log());
        kib = pid > 0 ? rss_kib(pid) : -1;
      }
      const long queue = accept_queue(port_);
      {
        std::lock_guard lock(mutex_);
        const int p = phase_.load();
        if (kib >= 0) rss_[p].push_back(static_cast<double>(kib));
        queue_[p] = std::max(queue_[p], queue);
      }
      std::this_thread::sleep_for(100ms);
    }
  }

  const PgodHarness& pgod_;
  const int port_;
  std::atomic<bool> stop_{false};
  std::atomic<int> phase_{kIdle};
  mutable std::mutex mutex_;
  std::vector<double> rss_[kPhases];
  long queue_[kPhases] = {-1, -1, -1, -1, -1};
  std::thread thread_;  // last
};

// The gateway's /metrics: rejections by reason, and connections open now.
struct Metrics {
  bool ok = false;
  std::map<std::string, double> rejected;
  double connections = NAN;
};

Metrics scrape(int port) {
  Metrics metrics;
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in to = loopback(1, port);
  timeval limit{.tv_sec = 5, .tv_usec = 0};
  if (!fd || setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) != 0 ||
      connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0)
    return metrics;
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return metrics;
  std::string text;
  char buffer[16384];
  std::size_t body_at = std::string::npos, length = 0;
  static const std::regex content_length("\r\n[Cc]ontent-[Ll]ength: *([0-9]+)");
  for (;;) {
    const ssize_t n = recv(fd.get(), buffer, sizeof buffer, 0);
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (body_at == std::string::npos && (body_at = text.find("\r\n\r\n")) != std::string::npos) {
      body_at += 4;
      std::smatch m;
      const std::string head = text.substr(0, body_at);
      if (std::regex_search(head, m, content_length)) length = std::stoul(m[1].str());
    }
    if (body_at != std::string::npos && text.size() >= body_at + length) break;
  }
  if (body_at == std::string::npos || text.rfind("HTTP/1.1 200", 0) != 0) return metrics;
  static const std::regex rejected("^pgod_gateway_rejected_total\\{reason=\"([a-z_]+)\"\\} ([0-9.e+]+)");
  static const std::regex connections("^pgod_gateway_connections ([0-9.e+]+)");
  std::size_t at = body_at;
  while (at < text.size()) {
    const std::size_t end = std::min(text.find('\n', at), text.size());
    const std::string line = text.substr(at, end - at);
    std::smatch m;
    if (std::regex_search(line, m, rejected)) metrics.rejected[m[1].str()] = std::stod(m[2].str());
    if (std::regex_search(line, m, connections)) metrics.connections = std::stod(m[1].str());
    at = end + 1;
  }
  metrics.ok = true;
  return metrics;
}

// --- the legitimate client ---

struct Options {
  int pings;
  std::chrono::seconds ramp, min_attack, max_attack;
  Attacks attacks;
  std::string command;
};

Options parse_arguments(int argc, char** argv) {
  Options options{.pings = argc > 1 ? std::atoi(argv[1]) : 300,
                  .ramp = std::chrono::seconds(argc > 2 ? std::atoi(argv[2]) : 10),
                  .min_attack = std::chrono::seconds(argc > 3 ? std::atoi(argv[3]) : 60),
                  .max_attack = std::chrono::seconds(argc > 4 ? std::atoi(argv[4]) : 300),
                  .attacks = attacks_from(argc > 5 ? argv[5] : "all"),
                  .command = ""};
  for (int i = 0; i < argc; ++i) options.command += (i ? " " : "") + std::string(argv[i]);
  if (options.pings < 1 || options.ramp.count() < 0 || options.min_attack.count() < 0 ||
      options.max_attack < options.min_attack)
    throw std::runtime_error(
        "usage: gateway_flood_bench [pings] [ramp-s] [min-attack-s] [max-attack-s] [all|silent,loris,dh,holders]");
  return options;
}

struct Pings {
  int attempted = 0, ok = 0;
  std::vector<double> ok_ms;            // successful pings' wall times
  std::vector<double> all_ms;           // every attempt's
  std::map<std::string, int> failures;  // first line of stderr (or the exit) → how many
};

// `count` pings, the i-th started no earlier than `spacing` × i after the first, none started
// after `deadline`.
Pings ping_series(const std::vector<std::string>& argv, int count, Clock::duration spacing = {},
                  Clock::time_point deadline = Clock::time_point::max()) {
  Pings pings;
  const auto first = Clock::now();
  for (int i = 0; i < count; ++i) {
    std::this_thread::sleep_until(first + spacing * i);
    if (Clock::now() >= deadline) break;
    const Run r = run(argv);
    ++pings.attempted;
    pings.all_ms.push_back(r.ms());
    if (r.exit_code == 0 && r.head.rfind("pong! - ", 0) == 0) {
      ++pings.ok;
      pings.ok_ms.push_back(r.ms());
    } else {
      const std::string why = r.exit_code == 124 ? "timed out after " + std::to_string(kPingTimeoutSeconds) + " s"
                                                 : "exit " + std::to_string(r.exit_code) + ": " + first_line(r.err);
      ++pings.failures[why];
    }
  }
  return pings;
}

std::string failures_text(const Pings& pings) {
  std::string text;
  for (const auto& [why, count] : pings.failures)
    text += (text.empty() ? "" : "; ") + std::to_string(count) + "× " + why;
  return text.empty() ? "none" : text;
}

// --- setup ---

std::string make_key(const std::string& dir, const std::string& name) {
  const std::string key = dir + "/" + name;
  must({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key});
  return key;
}

// The ports the gateway listens on (SSH, metrics).
struct Ports {
  int ssh, metrics;
};

// The legitimate client: pgoctl, bounded to kPingTimeoutSeconds by timeout(1).
std::vector<std::string> ping_command(int port, const std::string& known_hosts, const std::string& key) {
  std::vector<std::string> argv = {"/usr/bin/timeout", "-k", "2", std::to_string(kPingTimeoutSeconds)};
  argv.insert(argv.end(),
              {PGOCTL_BIN, "-p", std::to_string(port), "--known-hosts", known_hosts, "-i", key, "127.0.0.1:a//ping"});
  return argv;
}

// pgod with service a listing both keys, and the gateway with its default limits, once `ping`
// gets an answer (which also records the host key in pgoctl's known hosts).
void start_pgod(PgodHarness& pgod, const Ports& ports, const std::string& key, const std::string& holder_key,
                const std::vector<std::string>& ping) {
  pgod.upstream("a").commit(
      {{"ssh/dev.pub", read_file(key + ".pub")}, {"ssh/holder.pub", read_file(holder_key + ".pub")}});
  pgod.write_config(PgodHarness::service_toml("a", service_user_a().name, pgod.upstream("a").path()));
  pgod.start({"--gateway-program", programs_dir() + "/pgod-gateway", "-s", "127.0.0.1:" + std::to_string(ports.ssh),
              "-m", "127.0.0.1:" + std::to_string(ports.metrics)});
  if (!pgod.wait_ready({"a"}) || !PgodHarness::wait_for([&]() { return run(ping).exit_code == 0; }))
    throw std::runtime_error("the gateway does not answer a//ping: " + pgod.log());
}

// The attackers need more descriptors than the default 1024: the soft limit up to the hard one.
void raise_file_limit(rlim_t needed) {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) throw std::runtime_error("getrlimit");
  if (files.rlim_cur >= needed) return;
  if (files.rlim_max != RLIM_INFINITY && files.rlim_max < needed)
    throw std::runtime_error("the open-file limit's hard limit (" + std::to_string(files.rlim_max) +
                             ") is below what the attack needs (" + std::to_string(needed) + ")");
  files.rlim_cur = needed;
  if (setrlimit(RLIMIT_NOFILE, &files) != 0) throw std::runtime_error("setrlimit RLIMIT_NOFILE");
}

// Every attacker source answers on loopback (Linux routes all of 127.0.0.0/8 to lo).
void check_sources(int port) {
  for (int source = 0; source < kSources; ++source)
    if (!connect_from(source, port))
      throw std::runtime_error("cannot connect from 127.0.0." + std::to_string(2 + source));
}

// User and system CPU time of this process's threads so far.
double own_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::size_t open_fds() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

// --- the report ---

struct Result {
  Pings reference, attacked, serving;
  double attack_s = 0, ramp_s = 0;
  std::vector<double> rss_idle, rss_reference, rss_attack, rss_after;
  long queue_reference = -1, queue_attack = -1;  // longest accept queue seen
  double listen_drops = NAN;                     // the host's, during the attack
  double hwm_kib = NAN;
  double gateway_cpu_pct = NAN;
  double attackers_cpu_pct = NAN;  // this program's threads, the attackers' (pgoctl's are its children)
  std::size_t restarts = 0;
  Metrics before, during, after;
  RawStats silent, loris;
  DhStats dh;
  HolderStats holders;
};

double max_of(const std::vector<double>& v) { return v.empty() ? NAN : *std::max_element(v.begin(), v.end()); }
double rate(const Pings& p) { return p.attempted ? static_cast<double>(p.ok) / p.attempted : NAN; }
std::string mib(double kib) { return std::isnan(kib) ? "n/a" : fixed(kib / 1024) + " MiB"; }

std::string rejected_delta(const Metrics& from, const Metrics& to) {
  if (!from.ok || !to.ok) return "n/a (no /metrics answer)";
  std::string text;
  for (const auto& [reason, value] : to.rejected) {
    const auto was = from.rejected.find(reason);
    const double delta = value - (was == from.rejected.end() ? 0 : was->second);
    if (delta > 0) text += (text.empty() ? "" : " ") + reason + "=" + fixed(delta, 0);
  }
  return text.empty() ? "none" : text;
}

void print_figures(const Result& r, const Options& options) {
  figure_text("flood_attacks", options.attacks.text());
  figure("flood_ref_ms", r.reference.ok_ms);
  figure("flood_ref_attempted", r.reference.attempted);
  figure("flood_ref_ok", r.reference.ok);
  figure("flood_ms", r.attacked.ok_ms);
  figure("flood_attempted", r.attacked.attempted);
  figure("flood_ok", r.attacked.ok);
  figure("flood_attack_s", r.attack_s);
  figure("flood_rss_idle_kib", median(r.rss_idle));
  figure("flood_rss_peak_kib", max_of(r.rss_attack));
  figure("flood_rss_after_kib", r.rss_after.empty() ? NAN : r.rss_after.back());
  figure("flood_serving_attempted", r.serving.attempted);
  figure("flood_serving_ok", r.serving.ok);
  figure("flood_gateway_restarts", static_cast<double>(r.restarts));
  figure("flood_gateway_cpu_pct", r.gateway_cpu_pct);
  figure("flood_attackers_cpu_pct", r.attackers_cpu_pct);
  figure("flood_accept_queue_max", static_cast<double>(r.queue_attack));
  figure("flood_listen_drops", r.listen_drops);
  figure("flood_silent_closed", static_cast<double>(r.silent.closed));
  figure("flood_silent_life_ms", median(r.silent.lifetime_ms));
  figure("flood_loris_closed", static_cast<double>(r.loris.closed));
  figure("flood_loris_life_ms", median(r.loris.lifetime_ms));
  figure("flood_dh_attempts", static_cast<double>(r.dh.attempts));
  figure("flood_dh_completed", static_cast<double>(r.dh.completed));
  figure("flood_dh_refused", static_cast<double>(r.dh.refused));
  figure("flood_holder_held", static_cast<double>(r.holders.held));
  figure("flood_holder_closed", static_cast<double>(r.holders.closed));
  figure("flood_holder_life_ms", median(r.holders.hold_ms));
  figure_text("flood_rejected", rejected_delta(r.before, r.after));
}

void print_raw(const char* what, int clients, const RawStats& s, double seconds) {
  std::printf(
      "  %s (%d clients): %llu connects started, %llu established, %llu answered by the gateway (banner), %llu "
      "closed by it (%s/s; lifetime p50 %s ms, p99 %s ms), %llu refused or timed out before established, %llu "
      "open at the end as the attacker saw it\n",
      what, clients, static_cast<unsigned long long>(s.started), static_cast<unsigned long long>(s.established),
      static_cast<unsigned long long>(s.greeted), static_cast<unsigned long long>(s.closed),
      fixed(static_cast<double>(s.closed) / seconds).c_str(), fixed(percentile(s.lifetime_ms, 0.5)).c_str(),
      fixed(percentile(s.lifetime_ms, 0.99)).c_str(), static_cast<unsigned long long>(s.refused),
      static_cast<unsigned long long>(s.open_at_end));
}

void print_table(const Result& r, const Options& options) {
  const double ref50 = percentile(r.reference.ok_ms, 0.5), ref99 = percentile(r.reference.ok_ms, 0.99);
  const double p50 = percentile(r.attacked.ok_ms, 0.5), p99 = percentile(r.attacked.ok_ms, 0.99);
  std::printf("\ncommand: %s   (%d pings; ramp %lld s; attack >= %lld s, <= %lld s)\n", options.command.c_str(),
              options.pings, static_cast<long long>(options.ramp.count()),
              static_cast<long long>(options.min_attack.count()), static_cast<long long>(options.max_attack.count()));
  std::printf(
      "attack (%s): %d silent + %d slow-loris sockets over %d sources (127.0.0.2-%d), %d DH-only threads, %d key "
      "holders; legitimate: pgoctl from 127.0.0.1, %d s time-out per ping\n\n",
      options.attacks.text().c_str(), kSilent, kLoris, kSources, kSources + 1, kDhThreads,
      kHolderThreads * kHoldersPerThread, kPingTimeoutSeconds);
  std::printf("| | under attack | no attack (reference, same run) | attack/ref |\n|---|---|---|---|\n");
  std::printf("| pgoctl a//ping succeeded | %d of %d (%s) | %d of %d (%s) | |\n", r.attacked.ok, r.attacked.attempted,
              fixed_pct(rate(r.attacked)).c_str(), r.reference.ok, r.reference.attempted,
              fixed_pct(rate(r.reference)).c_str());
  std::printf("| p50 ms (successful pings) | %s | %s | %s |\n", fixed(p50).c_str(), fixed(ref50).c_str(),
              fixed(p50 / ref50, 2).c_str());
  std::printf("| p99 ms (successful pings) | %s | %s | %s |\n", fixed(p99).c_str(), fixed(ref99).c_str(),
              fixed(p99 / ref99, 2).c_str());
  std::printf("| max ms (every attempt) | %s | %s | |\n", fixed(max_of(r.attacked.all_ms)).c_str(),
              fixed(max_of(r.reference.all_ms)).c_str());
  std::printf("| gateway RSS, peak | %s | %s (idle before: %s) | %s |\n", mib(max_of(r.rss_attack)).c_str(),
              mib(max_of(r.rss_reference)).c_str(), mib(median(r.rss_idle)).c_str(),
              fixed(max_of(r.rss_attack) / median(r.rss_idle), 2).c_str());
  std::printf("\nfailed pings under attack: %s\n", failures_text(r.attacked).c_str());
  std::printf(
      "gateway: CPU %s %% of a core over the %s s attack (the attackers, in this program: %s %%); VmHWM %s; RSS "
      "after the attack %s; restarted by pgod %zu times\n",
      fixed(r.gateway_cpu_pct).c_str(), fixed(r.attack_s + r.ramp_s).c_str(), fixed(r.attackers_cpu_pct).c_str(),
      mib(r.hwm_kib).c_str(), mib(r.rss_after.empty() ? NAN : r.rss_after.back()).c_str(), r.restarts);
  std::printf("gateway /metrics: rejected during the attack: %s; connections open: %s after the ramp, %s at the end\n",
              rejected_delta(r.before, r.after).c_str(), fixed(r.during.connections, 0).c_str(),
              fixed(r.after.connections, 0).c_str());
  std::printf(
      "kernel: longest accept queue of the gateway's socket %ld during the attack (%ld without); connections the "
      "host's accept queues dropped (ListenOverflows + ListenDrops) during it: %s\n",
      r.queue_attack, r.queue_reference, fixed(r.listen_drops, 0).c_str());
  std::printf("what the attackers saw over %s s:\n", fixed(r.attack_s + r.ramp_s).c_str());
  const double seconds = r.attack_s + r.ramp_s;
  if (options.attacks.silent) print_raw("silent holders", kSilent, r.silent, seconds);
  if (options.attacks.loris) print_raw("slow-loris", kLoris, r.loris, seconds);
  if (options.attacks.dh)
    std::printf(
        "  DH-only: %llu attempts (%s/s), %llu refused at negotiation, %llu key exchanges COMPLETED with DH, %llu "
        "ended otherwise (refused connection, closed before negotiation); attempt p50 %s ms, p99 %s ms\n",
        static_cast<unsigned long long>(r.dh.attempts), fixed(static_cast<double>(r.dh.attempts) / seconds).c_str(),
        static_cast<unsigned long long>(r.dh.refused), static_cast<unsigned long long>(r.dh.completed),
        static_cast<unsigned long long>(r.dh.dropped), fixed(percentile(r.dh.attempt_ms, 0.5)).c_str(),
        fixed(percentile(r.dh.attempt_ms, 0.99)).c_str());
  if (options.attacks.dh && !r.dh.refused_example.empty())
    std::printf("    refused: %s\n", r.dh.refused_example.c_str());
  if (options.attacks.dh && !r.dh.dropped_example.empty())
    std::printf("    otherwise: %s\n", r.dh.dropped_example.c_str());
  if (options.attacks.holders)
    std::printf(
        "  key holders (%d): %llu logins tried, %llu channels held, %llu closed by the gateway (hold p50 %s ms, max %s "
        "ms), %llu still held at the end; failures: %llu connect or key exchange, %llu login, %llu channel\n",
        kHolderThreads * kHoldersPerThread, static_cast<unsigned long long>(r.holders.attempts),
        static_cast<unsigned long long>(r.holders.held), static_cast<unsigned long long>(r.holders.closed),
        fixed(percentile(r.holders.hold_ms, 0.5), 0).c_str(), fixed(max_of(r.holders.hold_ms), 0).c_str(),
        static_cast<unsigned long long>(r.holders.held_at_end), static_cast<unsigned long long>(r.holders.kex_failed),
        static_cast<unsigned long long>(r.holders.auth_refused),
        static_cast<unsigned long long>(r.holders.channel_refused));
  if (options.attacks.holders && !r.holders.failure_example.empty())
    std::printf("    e.g.: %s\n", r.holders.failure_example.c_str());
  std::printf("after the attack: %d of %d pings in a row succeeded (%s)\n", r.serving.ok, r.serving.attempted,
              failures_text(r.serving).c_str());
}

void print_goals(const Result& r) {
  const double success = rate(r.attacked), p99 = percentile(r.attacked.ok_ms, 0.99);
  const double peak = max_of(r.rss_attack) / 1024;
  const auto verdict = [](bool met) { return met ? "met" : "MISSED"; };
  std::printf(
      "\ngoals: >= 99 %% logins under attack: %s (%s); p99 < 1 s: %s (%s ms); peak RSS < %.0f MiB: %s (%s MiB); "
      "serving after: %s (%d of %d)\n",
      verdict(success >= kSuccessGoal), fixed_pct(success).c_str(), verdict(p99 < kP99GoalMs), fixed(p99).c_str(),
      kRssGoalMib, verdict(peak < kRssGoalMib), fixed(peak).c_str(),
      verdict(r.serving.ok == kServingPings && r.serving.attempted == kServingPings), r.serving.ok,
      r.serving.attempted);
}

// pgod stops, and its processes are waited for: the test users are removed at exit, and userdel
// refuses while any of their processes lingers.
void stop(PgodHarness& pgod) {
  pgod.stop();
  PgodHarness::wait_for([]() { return !runs_as(service_user_a().uid); }, 10s);
}

Result measure(PgodHarness& pgod, const Options& options, const Ports& ports, const std::vector<std::string>& ping,
               const std::string& holder_key) {
  check_sources(ports.ssh);
  Result r;
  GatewaySampler sampler(pgod, ports.ssh);
  std::this_thread::sleep_for(1s);  // idle samples
  sampler.phase(kReference);
  r.reference = ping_series(ping, options.pings);
  if (r.reference.ok != r.reference.attempted)
    error("reference pings failed without an attack: " + failures_text(r.reference));

  const std::size_t starts = gateway_starts(pgod.log());
  const pid_t pid = gateway_pid(pgod.log());
  const std::uint64_t cpu_before = cpu_ticks(pid);
  r.before = scrape(ports.metrics);
  const double drops_before = listen_drops();
  sampler.phase(kRamp);
  const std::size_t fds_before = open_fds();
  const double own_cpu_before = own_cpu_seconds();
  const auto attack_start = Clock::now();
  {
    Attack attack(ports.ssh, options.attacks, holder_key);
    std::this_thread::sleep_for(options.ramp);
    r.during = scrape(ports.metrics);
    sampler.phase(kAttack);
    const auto pings_start = Clock::now();
    const Clock::duration spacing = std::chrono::duration_cast<Clock::duration>(options.min_attack) / options.pings;
    r.attacked = ping_series(ping, options.pings, spacing, pings_start + options.max_attack);
    // At least the minimum window, even when the pings went fast.
    std::this_thread::sleep_until(pings_start + options.min_attack);
    r.after = scrape(ports.metrics);
    r.listen_drops = listen_drops() - drops_before;
    const auto attack_end = Clock::now();
    r.ramp_s = seconds_between(attack_start, pings_start);
    r.attack_s = seconds_between(pings_start, attack_end);
    const std::uint64_t cpu_after = cpu_ticks(pid);
    if (gateway_pid(pgod.log()) == pid && cpu_after >= cpu_before)
      r.gateway_cpu_pct = static_cast<double>(cpu_after - cpu_before) / static_cast<double>(sysconf(_SC_CLK_TCK)) /
                          seconds_between(attack_start, attack_end) * 100;
    r.attackers_cpu_pct = (own_cpu_seconds() - own_cpu_before) / seconds_between(attack_start, attack_end) * 100;
    sampler.phase(kAfter);
    attack.stop();
    for (const auto& failure : attack.failures()) error("attacker thread failed: " + failure);
    r.silent = attack.raw().silent();
    r.loris = attack.raw().loris();
    r.dh = attack.dh();
    r.holders = attack.holders();
  }
  // Every attacker socket is closed again (a leak would also keep connections open on the gateway).
  if (const std::size_t fds_after = open_fds(); fds_after > fds_before + 8)
    error("the attackers left " + std::to_string(fds_after - fds_before) + " descriptors open");
  r.restarts = gateway_starts(pgod.log()) - starts;
  r.serving = ping_series(ping, kServingPings);
  std::this_thread::sleep_for(300ms);  // an RSS sample after
  const pid_t now_pid = gateway_pid(pgod.log());
  if (const auto status = proc_status(now_pid); status.count("VmHWM"))
    r.hwm_kib = std::atof(status.at("VmHWM").c_str());
  r.rss_idle = sampler.rss(kIdle);
  r.rss_reference = sampler.rss(kReference);
  r.rss_attack = sampler.rss(kRamp);
  const auto attack_samples = sampler.rss(kAttack);
  r.rss_attack.insert(r.rss_attack.end(), attack_samples.begin(), attack_samples.end());
  r.rss_after = sampler.rss(kAfter);
  r.queue_reference = sampler.longest_queue(kReference);
  r.queue_attack = std::max(sampler.longest_queue(kRamp), sampler.longest_queue(kAttack));
  if (r.rss_idle.empty() || r.rss_attack.empty())
    error("no RSS samples of the gateway (pid " + std::to_string(pid) + ")");
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    const Options options = parse_arguments(argc, argv);
    // The attack's sockets, libssh's, and room for the rest.
    raise_file_limit(kSilent + kLoris + kDhThreads + kHolderThreads * kHoldersPerThread + 1024);
    TempDir dir;
    const std::string key = make_key(dir.path(), "key");
    const std::string holder_key = make_key(dir.path(), "holder");
    const Ports ports{.ssh = free_loopback_port(), .metrics = free_loopback_port()};
    const auto ping = ping_command(ports.ssh, dir.path() + "/known_hosts", key);
    PgodHarness pgod;
    start_pgod(pgod, ports, key, holder_key, ping);
    const Result r = measure(pgod, options, ports, ping, holder_key);
    print_figures(r, options);
    print_table(r, options);
    print_goals(r);
    stop(pgod);
  } catch (const std::exception& failure) {
    std::fprintf(stderr, "gateway_flood_bench: %s\n", failure.what());
    return 1;
  }
  if (errors > 0) std::printf("%d measurement errors (see stderr)\n", errors);
  return errors > 0 ? 1 : 0;
}
