// Clients that try to lock the others out: silent or slow connections, floods from a few
// addresses, costly key exchanges, key holders that sit on sessions. Each attacker connects
// from its own loopback address (127.0.0.2 and up), so the per-source rules can tell it from
// the legitimate clients on 127.0.0.1, which must be served throughout.
#include <gtest/gtest.h>
#include <libssh/libssh.h>

#include <algorithm>

#include "gateway_fixture.h"

namespace pgod::test {
namespace {

// A TCP connection to the gateway from `source` (a loopback address).
UniqueFd connect_from(const std::string& source, int port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<uint16_t>(port));
  remote.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!fd || bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      connect(fd.get(), reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0)
    throw std::runtime_error("connect from " + source + ": " + strerror(errno));
  return fd;
}

// What the gateway sent within `limit`, and whether it closed the connection.
struct Heard {
  std::string text;
  bool closed = false;
};
Heard listen_to(int fd, std::chrono::milliseconds limit, bool stop_at_banner = true) {
  Heard heard;
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    pollfd ready{fd, POLLIN, 0};
    if (poll(&ready, 1, 20) <= 0) continue;
    char buffer[512];
    const ssize_t got = read(fd, buffer, sizeof buffer);
    if (got <= 0) {
      heard.closed = true;
      break;
    }
    heard.text.append(buffer, static_cast<std::size_t>(got));
    if (stop_at_banner && heard.text.find("\r\n") != std::string::npos) break;
  }
  return heard;
}

bool served(int fd) { return listen_to(fd, 2s).text.starts_with("SSH-2.0-"); }
bool closed_unserved(int fd) {
  auto heard = listen_to(fd, 2s);
  return heard.closed && heard.text.empty();
}

class HostileClientTest : public GatewayTest {
 protected:
  // ssh from another loopback address.
  ProcessResult ssh_from(const std::string& source, const std::string& key, const std::string& command,
                         std::vector<std::string> extra = {}) const {
    extra.insert(extra.begin(), {"-b", source});
    return ssh(key, command, extra);
  }
  std::size_t rejected(const std::string& reason) const {
    const auto text = metrics();
    const std::string series = "pgod_gateway_rejected_total{reason=\"" + reason + "\"} ";
    const auto at = text.find(series);
    return at == std::string::npos ? 0 : std::stoul(text.substr(at + series.size()));
  }
};

TEST_F(HostileClientTest, ASourceHoldsAtMostItsShareOfPendingLoginsAndOthersAreServed) {
  start({"--gateway-limits", "per-source-max-unauthenticated=3,penalty-over-cap=1s"});
  std::vector<UniqueFd> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(connect_from("127.0.0.2", ssh_port_));
    ASSERT_TRUE(served(held.back().get())) << i;
  }
  auto over = connect_from("127.0.0.2", ssh_port_);
  EXPECT_TRUE(closed_unserved(over.get())) << "the fourth from one source is closed before the banner";
  auto other = connect_from("127.0.0.3", ssh_port_);
  EXPECT_TRUE(served(other.get())) << "another source is served";
  EXPECT_EQ(ssh(key_a_, "a//ping").exit_code, 0);
  EXPECT_GE(rejected("source"), 1u);
  EXPECT_NE(pgod_.log().find("logins pending from 127.0.0.2/32 (see --per-source-max-unauthenticated)"),
            std::string::npos)
      << pgod_.log();
}

TEST_F(HostileClientTest, ASourceWhoseLoginsKeepEndingUnauthenticatedIsRefusedForAGrowingTime) {
  start({"--gateway-limits", "penalty-no-auth=1s,penalty-min=3s,penalty-max=30s"});
  // Four connections that read the banner and go without offering a key: 4 s of penalty, less
  // the time it took (a penalty runs out as time passes), is over the 3 s minimum.
  for (int i = 0; i < 4; ++i) {
    auto fd = connect_from("127.0.0.4", ssh_port_);
    ASSERT_TRUE(served(fd.get())) << i;
  }
  ASSERT_TRUE(
      PgodHarness::wait_for([&]() { return pgod_.log().find("127.0.0.4/32: refused for") != std::string::npos; }, 5s))
      << pgod_.log();
  const auto refused_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(PgodHarness::wait_for(
      [&]() { return metrics().find("pgod_gateway_refused_sources 1\n") != std::string::npos; }, 3s))
      << metrics();
  EXPECT_TRUE(closed_unserved(connect_from("127.0.0.4", ssh_port_).get())) << "refused while penalised";
  EXPECT_EQ(ssh(key_a_, "a//ping").exit_code, 0) << "other sources are served meanwhile";
  // Each attempt while refused adds to the penalty: a source that keeps knocking stays out
  // past the 3 s it first earned.
  while (std::chrono::steady_clock::now() - refused_at < 4500ms) {
    EXPECT_TRUE(closed_unserved(connect_from("127.0.0.4", ssh_port_).get()));
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_GE(rejected("penalty"), 5u);
  // Once it stops, the penalty runs out and the source is served again. Each look is one more
  // knock (1 s), so look every 3 s.
  bool back = false;
  for (int look = 0; look < 10 && !back; ++look) {
    std::this_thread::sleep_for(3s);
    auto fd = connect_from("127.0.0.4", ssh_port_);
    back = listen_to(fd.get(), 2s).text.starts_with("SSH-2.0-");
  }
  EXPECT_TRUE(back) << "still refused 30 s after the last knock";
}

TEST_F(HostileClientTest, AClientTryingItsKeysOneByOneCountsOnce) {
  start({"--gateway-limits", "penalty-no-auth=1s,penalty-min=3s"});
  // Two logins, each trying three keys no service lists: one offence per connection (2 s, under
  // the 3 s minimum), not one per key (6 s).
  std::vector<std::string> keys;
  for (int i = 0; i < 3; ++i) {
    keys.push_back("-i");
    keys.push_back(make_key(pgod_.root(), "agent-key-" + std::to_string(i)));
  }
  for (int i = 0; i < 2; ++i) {
    auto refused = ssh_from("127.0.0.5", key_stranger_, "a//ping", keys);
    EXPECT_EQ(refused.exit_code, 255) << i;
    EXPECT_NE(refused.err.find("Permission denied"), std::string::npos) << i << ": " << refused.err;
  }
  EXPECT_EQ(ssh_from("127.0.0.5", key_a_, "a//ping").exit_code, 0);
  EXPECT_EQ(pgod_.log().find("127.0.0.5/32: refused for"), std::string::npos) << pgod_.log();
}

TEST_F(HostileClientTest, AtTheFullLimitANewSourceTakesTheSlotOfTheOldestLoginOfTheBusiestSource) {
  start({"--gateway-limits", "max-unauthenticated=4,early-drop-start=4"});
  std::vector<UniqueFd> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(connect_from("127.0.0.6", ssh_port_));
    ASSERT_TRUE(served(held.back().get())) << i;
  }
  EXPECT_TRUE(closed_unserved(connect_from("127.0.0.6", ssh_port_).get())) << "full for the source that holds them";
  // A login from elsewhere gets in: the busiest source's oldest pending login makes room.
  EXPECT_EQ(ssh(key_a_, "a//ping").exit_code, 0) << pgod_.log();
  EXPECT_TRUE(listen_to(held[0].get(), 2s, false).closed) << "the oldest was evicted";
  EXPECT_FALSE(listen_to(held[3].get(), 200ms, false).closed) << "the newest still waits";
  EXPECT_GE(rejected("evicted"), 1u);
}

TEST_F(HostileClientTest, SilentLoginsFromAsManySourcesAsTheLimitDoNotLockANewcomerOut) {
  start({"--gateway-limits", "max-unauthenticated=4,early-drop-start=4"});
  // One silent login from each of four sources: no source holds two, but a login that has
  // offered no key a second after connecting can be evicted.
  std::vector<UniqueFd> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(connect_from("127.0.0." + std::to_string(40 + i), ssh_port_));
    ASSERT_TRUE(served(held.back().get())) << i;
  }
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(ssh(key_a_, "a//ping").exit_code, 0) << pgod_.log();
  EXPECT_TRUE(listen_to(held[0].get(), 2s, false).closed) << "the oldest silent login made room";
  EXPECT_GE(rejected("evicted"), 1u);
}

TEST_F(HostileClientTest, IdleKeyHoldersMakeRoomForANewLoginAndBusyOnesDoNot) {
  // Room for two authenticated connections (four, less two kept for pending logins).
  start({"--gateway-limits", "max-connections=4,max-unauthenticated=2,early-drop-start=2"});
  auto first = spawn_background(ssh_argv(key_a_, "", {"-N"}));
  auto second = spawn_background(ssh_argv(key_a_, "", {"-N"}));
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() { return metrics().find("pgod_gateway_connections 2\n") != std::string::npos; }, 10s));
  std::this_thread::sleep_for(1200ms);
  // Another key logs in in place of the longest idle one.
  EXPECT_EQ(ssh(key_b_, "b//ping").exit_code, 0) << pgod_.log();
  // The one that logged in first (they started together) is closed; the other stays.
  int status = 0;
  Background* gone = nullptr;
  EXPECT_TRUE(PgodHarness::wait_for(
      [&]() {
        for (auto* holder : {first.get(), second.get()})
          if (waitpid(holder->pid, &status, WNOHANG) == holder->pid) gone = holder;
        return gone != nullptr;
      },
      5s))
      << "the longest idle connection was closed";
  if (gone != nullptr) {
    gone->pid = -1;
    Background* other = gone == first.get() ? second.get() : first.get();
    EXPECT_EQ(waitpid(other->pid, &status, WNOHANG), 0) << "one is enough";
  }
  first->stop();
  second->stop();
  // Two commands running hold their connections: a third login is refused.
  auto one = spawn_background(ssh_argv(key_a_, "a//logs -f"));
  auto two = spawn_background(ssh_argv(key_b_, "b//logs -f"));
  ASSERT_NE(one->read_until("line 2\n", 10s).find("line 2\n"), std::string::npos);
  ASSERT_NE(two->read_until("line 2\n", 10s).find("line 2\n"), std::string::npos);
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(ssh(key_b_, "b//ping").exit_code, 255);
  EXPECT_NE(one->read_until("line 40\n", 5s).find("line 40\n"), std::string::npos) << "the command runs on";
}

TEST_F(HostileClientTest, EarlyDropIsRandomAndSparesASourcesFirstPendingLogin) {
  start({"--gateway-limits",
         "max-unauthenticated=100,early-drop-start=2,early-drop-rate=50,per-source-max-unauthenticated=100"});
  std::vector<UniqueFd> held;
  std::size_t admitted = 0, dropped = 0;
  for (int i = 0; i < 40; ++i) {
    held.push_back(connect_from("127.0.0.7", ssh_port_));
    served(held.back().get()) ? ++admitted : ++dropped;
  }
  EXPECT_GE(admitted, 3u) << "two below the start, then some at random";
  EXPECT_GE(dropped, 5u) << "from the start on, one in two or more is dropped";
  // Every other source's first pending login is spared, however many are pending.
  for (int i = 10; i < 30; ++i) {
    held.push_back(connect_from("127.0.0." + std::to_string(i), ssh_port_));
    EXPECT_TRUE(served(held.back().get())) << "127.0.0." << i;
  }
  EXPECT_EQ(rejected("early_drop"), dropped);
}

TEST_F(HostileClientTest, OnlyCheapKeyExchangesAndEd25519HostKeysAreOffered) {
  start();
  // ssh says why it gave up at INFO, which the fixture's LogLevel=ERROR hides.
  const auto ssh_info = [&](const std::string& option) {
    auto argv = ssh_argv(key_a_, "a//ping", {"-o", option});
    std::replace(argv.begin(), argv.end(), std::string("LogLevel=ERROR"), std::string("LogLevel=INFO"));
    return run_process(argv);
  };
  auto dh = ssh_info(
      "KexAlgorithms=diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,diffie-hellman-group-exchange-"
      "sha256,ecdh-sha2-nistp256");
  EXPECT_EQ(dh.exit_code, 255);
  EXPECT_NE(dh.err.find("no matching key exchange method found"), std::string::npos) << dh.err;
  auto rsa = ssh_info("HostKeyAlgorithms=rsa-sha2-512,ecdsa-sha2-nistp256");
  EXPECT_EQ(rsa.exit_code, 255);
  EXPECT_NE(rsa.err.find("no matching host key type found"), std::string::npos) << rsa.err;
  EXPECT_EQ(ssh(key_a_, "a//ping", {"-o", "KexAlgorithms=curve25519-sha256"}).exit_code, 0);
  // --help lists what this libssh offers: curve25519 always, the hybrids where it has them,
  // and each listed one works with OpenSSH when OpenSSH has it too.
  const auto help = run_process({programs_dir() + "/pgod-gateway", "--help"});
  const std::string prefix = "Key exchange (as this libssh has them): ";
  const auto at = help.out.find(prefix);
  ASSERT_NE(at, std::string::npos) << help.out;
  std::string listed = help.out.substr(at + prefix.size());
  listed = listed.substr(0, listed.find('\n'));
  EXPECT_NE(listed.find("curve25519-sha256"), std::string::npos) << listed;
  const auto client_has = run_process({"/usr/bin/ssh", "-Q", "kex"}).out;
  std::stringstream names(listed);
  for (std::string name; std::getline(names, name, ',');) {
    name.erase(0, name.find_first_not_of(' '));
    EXPECT_TRUE(name == "curve25519-sha256" || name == "curve25519-sha256@libssh.org" ||
                name == "sntrup761x25519-sha512" || name == "sntrup761x25519-sha512@openssh.com" ||
                name == "mlkem768x25519-sha256")
        << name;
    if (client_has.find(name + "\n") == std::string::npos) continue;
    EXPECT_EQ(ssh(key_a_, "a//ping", {"-o", "KexAlgorithms=" + name}).exit_code, 0) << name;
  }
  EXPECT_NE(help.out.find("Host key: ssh-ed25519 only"), std::string::npos);
}

TEST_F(HostileClientTest, AGatewayGivenAnRsaHostKeyRefusesToStart) {
  start();
  const std::string key = make_key(pgod_.root(), "rsa-host-key", "rsa");
  auto refused =
      run_process({programs_dir() + "/pgod-gateway", "-s", "127.0.0.1:" + std::to_string(free_loopback_port()), "-m",
                   "127.0.0.1:" + std::to_string(free_loopback_port()), "--hooks",
                   "127.0.0.1:" + std::to_string(free_loopback_port()), "--host-key", key, "--rundir", pgod_.rundir(),
                   "--user", gateway_user().name});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("is ssh-rsa: the gateway serves only ed25519 host keys"), std::string::npos)
      << refused.err;
}

TEST_F(HostileClientTest, ASlowBannerIsDroppedAtTheKeyExchangeDeadline) {
  start({"--gateway-limits", "kex-timeout=1s,penalty-timeout=1s"});
  auto slow = connect_from("127.0.0.8", ssh_port_);
  ASSERT_TRUE(served(slow.get()));
  const auto started = std::chrono::steady_clock::now();
  // One byte of a banner every 300 ms: never a whole key exchange.
  const std::string banner = "SSH-2.0-slowloris\r\n";
  bool closed = false;
  for (char byte : banner) {
    if (write(slow.get(), &byte, 1) != 1 || listen_to(slow.get(), 300ms, false).closed) {
      closed = true;
      break;
    }
  }
  if (!closed) closed = listen_to(slow.get(), 3s, false).closed;
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(closed);
  EXPECT_LT(took, 6s) << "dropped at the 1 s deadline (checked every second), not the default 10 s";
  EXPECT_NE(pgod_.log().find("key exchange time-out (see --kex-timeout)"), std::string::npos) << pgod_.log();
  EXPECT_GE(rejected("timeout"), 1u);
}

// A libssh client that logs in with `key` and opens a session without asking for a command.
class SilentSession {
 public:
  SilentSession(int port, const std::string& key_path) : session_(ssh_new()) {
    const long timeout = 10;
    int verbosity = SSH_LOG_NOLOG;
    ssh_options_set(session_, SSH_OPTIONS_HOST, "127.0.0.1");
    ssh_options_set(session_, SSH_OPTIONS_PORT, &port);
    ssh_options_set(session_, SSH_OPTIONS_USER, "tester");
    ssh_options_set(session_, SSH_OPTIONS_TIMEOUT, &timeout);
    ssh_options_set(session_, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
    bool no = false;
    ssh_options_set(session_, SSH_OPTIONS_PROCESS_CONFIG, &no);
    ssh_key key = nullptr;
    if (ssh_connect(session_) != SSH_OK ||
        ssh_pki_import_privkey_file(key_path.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
      throw std::runtime_error("silent session: cannot connect");
    const int authenticated = ssh_userauth_publickey(session_, nullptr, key);
    ssh_key_free(key);
    if (authenticated != SSH_AUTH_SUCCESS) throw std::runtime_error("silent session: not authenticated");
    channel_ = ssh_channel_new(session_);
    if (channel_ == nullptr || ssh_channel_open_session(channel_) != SSH_OK)
      throw std::runtime_error("silent session: no channel");
  }
  ~SilentSession() {
    for (ssh_channel channel : extra_) ssh_channel_free(channel);
    if (channel_ != nullptr) ssh_channel_free(channel_);
    ssh_disconnect(session_);
    ssh_free(session_);
  }
  SilentSession(const SilentSession&) = delete;
  SilentSession& operator=(const SilentSession&) = delete;

  // Opens one more session on the same connection; false once the connection is gone.
  bool open_another() {
    ssh_channel channel = ssh_channel_new(session_);
    if (channel == nullptr) return false;
    const bool opened = ssh_channel_open_session(channel) == SSH_OK;
    extra_.push_back(channel);
    return opened && ssh_is_connected(session_) != 0;
  }

  // Whether the server closed the channel within `limit`.
  bool closed_by_server(std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      char buffer[256];
      const int got = ssh_channel_read_timeout(channel_, buffer, sizeof buffer, 0, 100);
      if (got == SSH_ERROR || ssh_channel_is_eof(channel_) || ssh_channel_is_closed(channel_)) return true;
    }
    return false;
  }

 private:
  ssh_session session_;
  ssh_channel channel_ = nullptr;
  std::vector<ssh_channel> extra_;
};

TEST_F(HostileClientTest, ASessionWithNoCommandIsClosedAtTheExecDeadline) {
  start({"--gateway-limits", "exec-timeout=1s"});
  SilentSession silent(ssh_port_, key_a_);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.closed_by_server(8s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 6s) << "at the 1 s deadline, not the default 10 s";
  EXPECT_EQ(ssh(key_a_, "a//ping").exit_code, 0);
}

TEST_F(HostileClientTest, AnIdleConnectionIsClosedAtTheIdleDeadline) {
  start({"--gateway-limits", "idle-timeout=1s"});
  // -N: logged in, no session at all.
  const auto started = std::chrono::steady_clock::now();
  auto idle = ssh(key_a_, "", {"-N"});
  EXPECT_EQ(idle.exit_code, 255);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 6s);
}

TEST_F(HostileClientTest, EmptySessionsDoNotKeepAConnectionFromItsIdleDeadline) {
  start({"--gateway-limits", "idle-timeout=2s,exec-timeout=1s"});
  SilentSession silent(ssh_port_, key_a_);
  const auto started = std::chrono::steady_clock::now();
  // A new empty session every half second: each is closed at the exec deadline, and none
  // counts as activity.
  bool closed = false;
  while (!closed && std::chrono::steady_clock::now() - started < 10s) {
    std::this_thread::sleep_for(500ms);
    closed = !silent.open_another();
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 6s) << "at the 2 s idle deadline";
}

TEST_F(HostileClientTest, OneKeyHoldsAtMostItsConnectionsAndCommandsAndOtherKeysAreServed) {
  start({"--gateway-limits", "max-connections-per-key=2,max-commands-per-key=1"});
  auto first = spawn_background(ssh_argv(key_a_, "", {"-N"}));
  auto second = spawn_background(ssh_argv(key_a_, "", {"-N"}));
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() {
        const auto text = metrics();
        return text.find("pgod_gateway_connections 2\n") != std::string::npos;
      },
      10s))
      << metrics();
  auto third = ssh(key_a_, "a//ping");
  EXPECT_EQ(third.exit_code, 255) << third.err;
  EXPECT_NE(pgod_.log().find("connections open with this key (see --max-connections-per-key)"), std::string::npos)
      << pgod_.log();
  EXPECT_EQ(ssh(key_b_, "b//ping").exit_code, 0) << "another key is served";
  first->stop();
  second->stop();
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return ssh(key_a_, "a//ping").exit_code == 0; }, 10s));
  // One command at a time for a key.
  auto follower = spawn_background(ssh_argv(key_a_, "a//logs -f"));
  ASSERT_NE(follower->read_until("line 2\n", 10s).find("line 2\n"), std::string::npos);
  auto busy = ssh(key_a_, "a//ps");
  EXPECT_EQ(busy.exit_code, 500 % 256);
  EXPECT_EQ(busy.err,
            "Internal Server Error: too many commands running with this key (the limit is 1); try again "
            "later\n");
  EXPECT_EQ(ssh(key_b_, "b//ps").exit_code, 0) << "another key is served";
}

TEST_F(HostileClientTest, PgoctlRefusedAtAcceptSaysTheServerMayBeBusy) {
  start({"--gateway-limits", "max-connections=1"});
  auto holder = spawn_background(ssh_argv(key_a_, "", {"-N"}));
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() { return metrics().find("pgod_gateway_connections 1\n") != std::string::npos; }, 10s));
  auto refused = run_process({PGOCTL_BIN, "-p", std::to_string(ssh_port_), "--known-hosts",
                              pgod_.root() + "/known_hosts", "-i", key_a_, "127.0.0.1:a//ping"});
  EXPECT_EQ(refused.exit_code, 255);
  EXPECT_NE(refused.err.find("the server closed the connection: it may be busy, or refusing this address for a "
                             "while; try again later"),
            std::string::npos)
      << refused.err;
}

}  // namespace
}  // namespace pgod::test
