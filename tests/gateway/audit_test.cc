// The audit trail: each command (from the gateway) and each deploy (from the worker) reaches
// the journal as one entry with its fields. On a host with journald the entries are read back
// with journalctl; without one (a container), the test listens on the journal's socket itself
// and reads the datagrams send_audit sends there, in the journal's native protocol.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "gateway_fixture.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;
using Entry = std::map<std::string, std::string>;

constexpr const char* kJournalDir = "/run/systemd/journal";
constexpr const char* kJournalSocket = "/run/systemd/journal/socket";

// Either journald's entries (journalctl) or our own socket's datagrams.
class Journal {
 public:
  Journal() {
    if (std::filesystem::exists(kJournalSocket) && !answers(kJournalSocket))
      std::filesystem::remove(kJournalSocket);  // left by a test that crashed: nobody reads it
    if (std::filesystem::exists(kJournalSocket)) {
      since_ = run_process({"/bin/date", "-u", "+%Y-%m-%d %H:%M:%S"}).out;
      while (!since_.empty() && since_.back() == '\n') since_.pop_back();
      return;
    }
    created_dir_ = !std::filesystem::exists(kJournalDir);
    std::filesystem::create_directories(kJournalDir);
    chmod(kJournalDir, 0755);
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", kJournalSocket);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
      throw std::runtime_error("cannot listen on the journal socket");
    chmod(kJournalSocket, 0666);  // the gateway and the workers send as their own users
  }
  ~Journal() {
    if (fd_ < 0) return;
    close(fd_);
    std::filesystem::remove(kJournalSocket);
    if (created_dir_) std::filesystem::remove(kJournalDir);
  }
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // The audit entries received so far (PGOD_AUDIT set), oldest first.
  std::vector<Entry> entries() {
    if (fd_ < 0) return from_journalctl();
    char buffer[65536];
    ssize_t got;
    while ((got = recv(fd_, buffer, sizeof buffer, 0)) > 0) {
      Entry entry;
      std::istringstream lines(std::string(buffer, static_cast<std::size_t>(got)));
      for (std::string line; std::getline(lines, line);) {
        const auto equals = line.find('=');
        if (equals != std::string::npos) entry[line.substr(0, equals)] = line.substr(equals + 1);
      }
      if (entry.count("PGOD_AUDIT")) received_.push_back(entry);
    }
    return received_;
  }

 private:
  static bool answers(const char* path) {
    const int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
    const bool connected = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    if (probe >= 0) close(probe);
    return connected;
  }

  std::vector<Entry> from_journalctl() const {
    const auto out = run_process({"/usr/bin/journalctl", "--since", since_, "-o", "export", "PGOD_AUDIT=command",
                                  "PGOD_AUDIT=deploy"})
                         .out;
    std::vector<Entry> entries;
    Entry entry;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) {
        if (!entry.empty()) entries.push_back(entry);
        entry.clear();
        continue;
      }
      const auto equals = line.find('=');
      if (equals != std::string::npos) entry[line.substr(0, equals)] = line.substr(equals + 1);
    }
    if (!entry.empty()) entries.push_back(entry);
    return entries;
  }

  int fd_ = -1;
  bool created_dir_ = false;
  std::string since_;
  std::vector<Entry> received_;
};

std::optional<Entry> find_entry(const std::vector<Entry>& entries, const std::string& kind, const std::string& field,
                                const std::string& value) {
  for (const auto& entry : entries) {
    auto found = entry.find(field);
    if (entry.at("PGOD_AUDIT") == kind && found != entry.end() && found->second.find(value) != std::string::npos)
      return entry;
  }
  return std::nullopt;
}

std::string describe(const std::vector<Entry>& entries) {
  std::string out;
  for (const auto& entry : entries) {
    for (const auto& [name, value] : entry) out += name + "=" + value + " ";
    out += "\n";
  }
  return out;
}

class AuditTest : public GatewayTest {};

TEST_F(AuditTest, EveryCommandAndEveryDeployIsOneJournalEntryWithItsFields) {
  Journal journal;
  start();
  const auto exec = ssh(key_b_, "b//exec -e TOKEN=hunter2 web true");
  const std::string pushed = pgod_.upstream("b").commit({{"README", "audited\n"}});
  const auto pull = ssh(key_b_, "b//git pull");
  ASSERT_EQ(pull.exit_code, 0) << pull.err;

  std::vector<Entry> entries;
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() {
        entries = journal.entries();
        return find_entry(entries, "deploy", "COMMIT", pushed) && find_entry(entries, "command", "VERB", "git pull");
      },
      20s))
      << describe(entries) << pgod_.log();

  const auto fingerprint_line = run_process({"/usr/bin/ssh-keygen", "-l", "-E", "sha256", "-f", key_b_ + ".pub"}).out;
  const std::string fingerprint = fingerprint_line.substr(
      fingerprint_line.find("SHA256:"),
      fingerprint_line.find(' ', fingerprint_line.find("SHA256:")) - fingerprint_line.find("SHA256:"));

  const auto command = find_entry(entries, "command", "VERB", "exec");
  ASSERT_TRUE(command) << describe(entries);
  EXPECT_EQ(command->at("SERVICE"), "b");
  EXPECT_EQ(command->at("KEY_FINGERPRINT"), fingerprint);
  EXPECT_EQ(command->at("ARGS"), "-e TOKEN=*** web true");
  EXPECT_EQ(command->at("EXIT"), std::to_string(exec.exit_code));
  EXPECT_EQ(command->at("TRIGGER"), "command");
  EXPECT_TRUE(command->at("SOURCE").starts_with("127.0.0.1:")) << command->at("SOURCE");
  EXPECT_EQ(command->at("COMMIT").size(), 40u);
  EXPECT_EQ(describe(entries).find("hunter2"), std::string::npos) << "a value after '=' never reaches the journal";

  const auto git_pull = find_entry(entries, "command", "VERB", "git pull");
  ASSERT_TRUE(git_pull);
  EXPECT_EQ(git_pull->at("COMMIT"), pushed) << "the commit the service is at once the command is done";
  EXPECT_EQ(git_pull->at("EXIT"), "0");

  const auto deploy = find_entry(entries, "deploy", "COMMIT", pushed);
  ASSERT_TRUE(deploy);
  EXPECT_EQ(deploy->at("SERVICE"), "b");
  EXPECT_EQ(deploy->at("RESULT"), "deployed");
  EXPECT_NE(deploy->at("TRIGGER").find("git pull by tester@127.0.0.1"), std::string::npos) << deploy->at("TRIGGER");
  EXPECT_FALSE(deploy->at("DURATION_MS").empty());
  // The history says the same, and lists the commands too: who (the key's fingerprint, the
  // user, the address, the file listing the key), what (environment values hidden), the outcome,
  // newest first.
  const auto history = ssh(key_b_, "b//history").out;
  const auto deployed_at = history.find(pushed.substr(0, 12) + "  deployed");
  EXPECT_NE(deployed_at, std::string::npos) << history;
  const std::string by = " by key " + fingerprint + ", tester@127.0.0.1:";
  const auto pull_at = history.find(pushed.substr(0, 12) + "  exit 0 ");
  ASSERT_NE(pull_at, std::string::npos) << history;
  EXPECT_NE(history.find("git pull" + by, pull_at), std::string::npos) << history;
  EXPECT_LT(pull_at, deployed_at) << "the command ended after the deploy it asked for:\n" << history;
  EXPECT_NE(history.find("exec -e TOKEN=*** web true" + by), std::string::npos) << history;
  EXPECT_EQ(history.find("hunter2"), std::string::npos) << history;
}

// A command whose client goes away before it ends is recorded too, as abandoned: one journal
// entry from the gateway, one history line from the worker.
TEST_F(AuditTest, ACommandWhoseClientLeavesIsRecordedAsAbandoned) {
  Journal journal;
  start();
  auto follower = spawn_background(ssh_argv(key_a_, "a//logs -f"));
  const auto first = follower->read_until("line 3\n", 10s);
  ASSERT_NE(first.find("line 3\n"), std::string::npos) << first << pgod_.log();
  follower->stop(SIGTERM);
  std::string history;
  EXPECT_TRUE(PgodHarness::wait_for(
      [&]() {
        history = ssh(key_a_, "a//history").out;
        return history.find("abandoned") != std::string::npos;
      },
      10s))
      << history;
  const auto line = history.substr(history.find("abandoned"));
  EXPECT_NE(line.find("logs -f by key SHA256:"), std::string::npos) << history;
  EXPECT_NE(line.find(", tester@127.0.0.1:"), std::string::npos) << history;
  EXPECT_NE(line.find(" (ssh/dev.pub): ended before it answered"), std::string::npos) << history;
  std::vector<Entry> entries;
  EXPECT_TRUE(PgodHarness::wait_for(
      [&]() {
        entries = journal.entries();
        return find_entry(entries, "command", "EXIT", "abandoned").has_value();
      },
      10s))
      << describe(entries);
  const auto entry = find_entry(entries, "command", "EXIT", "abandoned");
  ASSERT_TRUE(entry) << describe(entries);
  EXPECT_EQ(entry->at("VERB"), "logs");
  EXPECT_EQ(entry->at("ARGS"), "-f");
  EXPECT_EQ(entry->at("SERVICE"), "a");
}

}  // namespace
}  // namespace pgod::test
