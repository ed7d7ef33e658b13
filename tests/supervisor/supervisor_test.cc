// pgod as root, end to end on the host side: real test users, real repositories, the
// recording stand-in docker. What the workers are (identity, confinement, fds), how they are
// kept running (restart, backoff, reload, removal) and how pgod stops.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "git_fixture.h"
#include "pgod_harness.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

bool process_exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// /proc/net/unix: socket inode → bound path.
std::map<std::string, std::string> unix_socket_paths() {
  std::map<std::string, std::string> paths;
  std::ifstream in("/proc/net/unix");
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string num, refs, protocol, flags, type, state, inode, path;
    fields >> num >> refs >> protocol >> flags >> type >> state >> inode >> path;
    paths[inode] = path.empty() ? "<unbound type " + type + ">" : path;
  }
  return paths;
}

struct Mode {
  uid_t uid;
  gid_t gid;
  mode_t mode;
};
Mode mode_of(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(lstat(path.c_str(), &info), 0) << path;
  return {info.st_uid, info.st_gid, info.st_mode & 07777};
}

class SupervisorTest : public ::testing::Test {
 protected:
  std::string service(const std::string& name, const TestUser& user, const std::string& extra = "") {
    return PgodHarness::service_toml(name, user.name, pgod.upstream(name).path(), extra);
  }
  std::string two_services(const std::string& extra_b = "") {
    return service("a", service_user_a()) + service("b", service_user_b(), extra_b);
  }
  void start_two(std::vector<std::string> args = {}) {
    pgod.write_config(two_services());
    pgod.start(std::move(args));
    ASSERT_TRUE(pgod.wait_ready({"a", "b"})) << pgod.log();
  }
  // Writes an executable script into the test's root.
  std::string script(const std::string& name, const std::string& body) {
    const auto path = pgod.root() + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body;
    fs::permissions(path, fs::perms(0755));
    return path;
  }

  PgodHarness pgod;
};

TEST_F(SupervisorTest, EachWorkerRunsAsItsUserWithoutTheDockerGroupNoPrivilegesAndSeccomp) {
  start_two();
  for (const auto& [name, user] : {std::pair{"a", service_user_a()}, std::pair{"b", service_user_b()}}) {
    const pid_t pid = pgod.worker_pid(name);
    ASSERT_GT(pid, 0) << name;
    auto status = proc_status(pid);
    const auto uid = std::to_string(user.uid), gid = std::to_string(user.gid);
    EXPECT_EQ(status["Uid"], uid + "\t" + uid + "\t" + uid + "\t" + uid) << name;
    EXPECT_EQ(status["Gid"], gid + "\t" + gid + "\t" + gid + "\t" + gid) << name;
    std::set<std::string> groups;
    std::istringstream listed(status["Groups"]);
    for (std::string group; listed >> group;) groups.insert(group);
    EXPECT_EQ(groups, (std::set<std::string>{gid}))
        << name << ": the user's own groups, never docker (root-equivalent)";
    EXPECT_EQ(status["NoNewPrivs"], "1") << name;
    EXPECT_EQ(status["Seccomp"], "2") << name;
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
      EXPECT_EQ(status[set], "0000000000000000") << name << " " << set;

    // Open fds: the standard three, KJ's own event fds, exactly one socket, its own, and at most
    // the audit trail's unbound datagram socket to the journal (proto/audit.cc), close-on-exec.
    const auto sockets = unix_socket_paths();
    int socket_count = 0, journal_count = 0;
    for (const auto& [fd, target] : proc_fds(pid)) {
      if (fd <= 2) continue;
      if (target.starts_with("anon_inode:")) continue;
      ASSERT_TRUE(target.starts_with("socket:[")) << name << " fd " << fd << " -> " << target;
      const auto inode = target.substr(8, target.size() - 9);
      if (sockets.at(inode) == "<unbound type 0002>") {  // SOCK_DGRAM
        const auto info = read_file("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
        const auto flags = std::stoul(info.substr(info.find("flags:") + 6), nullptr, 8);
        EXPECT_NE(flags & O_CLOEXEC, 0u) << name << " fd " << fd << ": the journal's socket, close-on-exec";
        ++journal_count;
        continue;
      }
      EXPECT_EQ(sockets.at(inode), pgod.rundir() + "/workers/" + name + ".sock") << name << " fd " << fd;
      ++socket_count;
    }
    EXPECT_EQ(socket_count, 1) << name;
    EXPECT_LE(journal_count, 1) << name;

    auto checkout = mode_of(pgod.dir() + "/" + name);
    EXPECT_EQ(checkout.uid, user.uid);
    EXPECT_EQ(checkout.mode, 0700u) << "not readable by other users";
    auto state = mode_of(pgod.dir() + "/.pgod/" + name);
    EXPECT_EQ(state.uid, user.uid);
    EXPECT_EQ(state.mode, 0700u);
    auto socket = mode_of(pgod.rundir() + "/workers/" + name + ".sock");
    EXPECT_EQ(socket.uid, 0u);
    EXPECT_EQ(socket.gid, gateway_user().gid);
    EXPECT_EQ(socket.mode, 0660u);
  }
  auto workers_dir = mode_of(pgod.rundir() + "/workers");
  EXPECT_EQ(workers_dir.gid, gateway_user().gid);
  EXPECT_EQ(workers_dir.mode, 0750u);
  // The calls the stand-in saw came from the services' own users.
  const auto calls = pgod.calls();
  EXPECT_NE(calls.find("-p a -f " + pgod.dir() + "/.pgod/a/compose.validated.yaml up -d"), std::string::npos) << calls;
  EXPECT_NE(calls.find("uid=" + std::to_string(service_user_a().uid)), std::string::npos);
  EXPECT_NE(calls.find("uid=" + std::to_string(service_user_b().uid)), std::string::npos);
  EXPECT_EQ(calls.find("uid=0 "), std::string::npos) << "nothing ran docker as root";
}

// pgod --compose reaches every worker: with "plugin" they run `docker compose` without asking
// `docker compose version` first, as auto does.
TEST_F(SupervisorTest, TheComposeProgramChosenForPgodIsWhatEveryWorkerRuns) {
  std::ofstream(pgod.standin_dir() + "/plugin") << "";  // the stand-in docker has the plugin
  start_two({"--compose", "plugin"});
  const auto calls = pgod.calls();
  for (const char* name : {"a", "b"}) {
    EXPECT_NE(calls.find(std::string("docker compose -p ") + name + " -f " + pgod.dir() + "/.pgod/" + name +
                         "/compose.validated.yaml up -d"),
              std::string::npos)
        << calls;
  }
  EXPECT_EQ(calls.find("docker compose version"), std::string::npos) << "chosen, not detected\n" << calls;
}

TEST_F(SupervisorTest, NeitherTheGatewayNorAnotherServiceCanReadAServicesFiles) {
  start_two();
  const std::string checkout = pgod.dir() + "/a", state = pgod.dir() + "/.pgod/a";
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return fs::exists(state + "/compose.validated.yaml"); })) << pgod.log();
  const std::string docker = std::to_string(docker_group());
  // As a worker of b runs (b's user, its group and docker), and as the gateway runs.
  const auto as = [](const TestUser& user, const std::string& groups, const std::vector<std::string>& command) {
    std::vector<std::string> argv = {"/usr/bin/setpriv", "--reuid=" + std::to_string(user.uid),
                                     "--regid=" + std::to_string(user.gid)};
    argv.push_back(groups.empty() ? "--clear-groups" : "--groups=" + groups);
    argv.insert(argv.end(), command.begin(), command.end());
    return run_process(argv);
  };
  const TestUser& a = service_user_a();
  const TestUser& b = service_user_b();
  const TestUser& gateway = gateway_user();
  for (const auto& [path, is_dir] :
       {std::pair{checkout, true}, std::pair{checkout + "/compose.yaml", false}, std::pair{state, true},
        std::pair{state + "/compose.validated.yaml", false}, std::pair{state + "/docker", true}}) {
    const std::vector<std::string> read =
        is_dir ? std::vector<std::string>{"/bin/ls", "-a", path} : std::vector<std::string>{"/bin/cat", path};
    if (fs::exists(path)) {  // the check itself works: the owner can read it
      EXPECT_EQ(as(a, std::to_string(a.gid) + "," + docker, read).exit_code, 0) << path;
    }
    for (const auto& [who, groups] :
         {std::pair{&b, std::to_string(b.gid) + "," + docker}, std::pair{&gateway, std::string()}}) {
      auto denied = as(*who, groups, read);
      EXPECT_NE(denied.exit_code, 0) << who->name << " read " << path << ":\n" << denied.out;
      EXPECT_NE(denied.err.find("Permission denied"), std::string::npos)
          << who->name << " " << path << ": " << denied.err;
    }
  }
}

TEST_F(SupervisorTest, AWorkerIsExecutedWithOnlyItsSettingsAndSocketOpen) {
  start_two({"--worker-program", programs_dir() + "/exec-probe"});
  const auto log = pgod.log();
  EXPECT_EQ(count(log, "EXEC-PROBE "), 2u) << log;
  EXPECT_EQ(count(log, " fds=0,1,2,3,4\n"), 2u) << "stdin, stdout, stderr, settings, socket; nothing else\n" << log;
}

TEST_F(SupervisorTest, AKilledWorkerIsBackWithinASecondAloneAndNothingIsDowned) {
  start_two();
  std::this_thread::sleep_for(1200ms);  // up for longer than the first backoff step
  const pid_t a = pgod.worker_pid("a"), b = pgod.worker_pid("b");
  ASSERT_GT(a, 0);
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(a, SIGKILL), 0);
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() {
        const pid_t now = pgod.worker_pid("a");
        return now != 0 && now != a;
      },
      5s));
  const auto back = std::chrono::steady_clock::now() - killed;
  EXPECT_LT(back, 1s) << "restarted after " << std::chrono::duration_cast<std::chrono::milliseconds>(back).count()
                      << " ms";
  EXPECT_EQ(pgod.worker_pid("b"), b) << "the other worker was not touched";
  auto row = pgod.worker("a");
  EXPECT_EQ(row->restarts, 1u);
  EXPECT_EQ(row->last_exit, "signal 9");
  EXPECT_EQ(pgod.calls().find(" down"), std::string::npos) << "a worker restart never downs containers";
}

TEST_F(SupervisorTest, AWorkerThatKeepsDyingIsRestartedWithDoublingDelays) {
  pgod.write_config(service("a", service_user_a()));
  pgod.start({"--worker-program", "/bin/false"});
  // Each start exits at once, so the restart count steps at each start: t≈0, 1, 3, 7 s.
  std::vector<std::chrono::steady_clock::time_point> steps;
  unsigned seen = 0;
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() {
        auto row = pgod.worker("a");
        if (row && row->restarts > seen) {
          seen = row->restarts;
          steps.push_back(std::chrono::steady_clock::now());
          EXPECT_EQ(row->last_exit, "exit 1");
        }
        return seen >= 4;
      },
      15s))
      << pgod.log();
  ASSERT_EQ(steps.size(), 4u) << "each restart seen once";
  const auto first = std::chrono::duration<double>(steps[1] - steps[0]).count();
  const auto second = std::chrono::duration<double>(steps[2] - steps[1]).count();
  const auto third = std::chrono::duration<double>(steps[3] - steps[2]).count();
  EXPECT_NEAR(first, 1.0, 0.3);
  EXPECT_NEAR(second, 2.0, 0.3);
  EXPECT_NEAR(third, 4.0, 0.3);
  EXPECT_EQ(pgod.worker("a")->state, "backing-off");
}

TEST_F(SupervisorTest, EditingOneServiceRestartsOnlyItsWorkerWithTheNewSettings) {
  start_two();
  const pid_t a = pgod.worker_pid("a"), b = pgod.worker_pid("b");
  pgod.write_config(two_services("env = [ \"GREETING=changed\" ]\n"));  // noticed through inotify
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    const pid_t now = pgod.worker_pid("b");
    return now != 0 && now != b;
  })) << pgod.log();
  EXPECT_EQ(pgod.worker_pid("a"), a) << "unchanged workers keep their PID";
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return pgod.calls().find("GREETING=changed") != std::string::npos; }))
      << "the new worker runs compose with the new env\n"
      << pgod.calls();
  EXPECT_EQ(pgod.calls().find(" down"), std::string::npos);
}

TEST_F(SupervisorTest, TheServiceWithImportGetsTheCaddySitesOfEveryService) {
  const auto config = [&](const std::string& host) {
    return service("a", service_user_a(),
                   "import = \"Caddyfile-import\"\nurls = { \"a.example.org\" = \"app:8080\" }\n") +
           service("b", service_user_b(), "urls = { \"" + host + "\" = \"web:80\" }\n");
  };
  pgod.write_config(config("b.example.org"));
  pgod.start();
  ASSERT_TRUE(pgod.wait_ready({"a", "b"})) << pgod.log();
  const auto import = pgod.dir() + "/a/Caddyfile-import";
  EXPECT_EQ(read_file(import),
            "a.example.org {\n\treverse_proxy app:8080\n}\nb.example.org {\n\treverse_proxy web:80\n}\n");
  EXPECT_FALSE(fs::exists(pgod.dir() + "/b/Caddyfile-import")) << "only the service with import gets it";

  // Another service's url changes: the importing worker is restarted with the new content.
  const pid_t a = pgod.worker_pid("a");
  pgod.write_config(config("c.example.org"));
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return read_file(import).find("c.example.org {") != std::string::npos; }))
      << read_file(import) << pgod.log();
  EXPECT_NE(pgod.worker_pid("a"), a);
  EXPECT_EQ(read_file(import).find("b.example.org"), std::string::npos);
}

TEST_F(SupervisorTest, SighupAddsAServiceAndWithoutRestartTheFileIsNotWatched) {
  start_two({"--restart=false"});
  const pid_t a = pgod.worker_pid("a"), b = pgod.worker_pid("b");
  pgod.write_config(two_services() + service("c", service_user_c()));
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(pgod.worker("c").has_value()) << "--restart=false: nothing happens until SIGHUP";
  pgod.send_signal(SIGHUP);
  ASSERT_TRUE(pgod.wait_ready({"c"})) << pgod.log();
  EXPECT_EQ(pgod.worker_pid("a"), a);
  EXPECT_EQ(pgod.worker_pid("b"), b);
}

TEST_F(SupervisorTest, ANewUserForAServiceGetsItsCheckoutAndStateAfterTheOldWorkerStopped) {
  start_two();
  const pid_t b = pgod.worker_pid("b");
  std::ofstream(pgod.dir() + "/.pgod/b/docker/planted").close();  // what the old user might leave
  pgod.write_config(service("a", service_user_a()) + service("b", service_user_c()));
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    const pid_t now = pgod.worker_pid("b");
    return now != 0 && now != b && proc_status(now)["Uid"].starts_with(std::to_string(service_user_c().uid) + "\t");
  })) << pgod.log();
  EXPECT_FALSE(process_exists(b));
  for (const auto& path : {pgod.dir() + "/b", pgod.dir() + "/b/compose.yaml", pgod.dir() + "/.pgod/b"})
    EXPECT_EQ(mode_of(path).uid, service_user_c().uid) << path;
  EXPECT_FALSE(fs::exists(pgod.dir() + "/.pgod/b/docker/planted")) << "the old user's docker config is dropped";
  EXPECT_TRUE(pgod.wait_ready({"b"}));
}

TEST_F(SupervisorTest, ABadConfigOnReloadLeavesEveryWorkerAlone) {
  start_two();
  const pid_t a = pgod.worker_pid("a"), b = pgod.worker_pid("b");
  pgod.write_config(two_services() + "[[services]]\nname = \"broken\"\nuser = \"no-such-user-here\"\n");
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    return pgod.log().find("invalid config; the running services are left as they are") != std::string::npos;
  })) << pgod.log();
  const auto log = pgod.log();
  EXPECT_NE(log.find(pgod.config_path() + ":13:"), std::string::npos) << "file:line of the bad table\n" << log;
  EXPECT_NE(log.find("no-such-user-here"), std::string::npos);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(pgod.worker_pid("a"), a);
  EXPECT_EQ(pgod.worker_pid("b"), b);
  EXPECT_EQ(pgod.workers().size(), 2u);
}

TEST_F(SupervisorTest, ARemovedServiceIsDownedAsNobodyAndItsDirectoriesRemoved) {
  start_two();
  const pid_t a = pgod.worker_pid("a"), b = pgod.worker_pid("b");
  pgod.write_config(service("a", service_user_a()));
  // The checkout goes first, then the state directory and the socket: wait for the last.
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    return !fs::exists(pgod.dir() + "/b") && !fs::exists(pgod.rundir() + "/workers/b.sock");
  })) << pgod.log();
  EXPECT_FALSE(process_exists(b));
  EXPECT_FALSE(fs::exists(pgod.dir() + "/.pgod/b"));
  EXPECT_FALSE(fs::exists(pgod.rundir() + "/workers/b.sock"));
  const auto calls = pgod.calls();
  const std::string down = "-p b -f " + pgod.dir() + "/.pgod/.retire-b/compose.retire.yaml down --remove-orphans";
  const auto at = calls.find(down);
  ASSERT_NE(at, std::string::npos) << calls;
  EXPECT_NE(calls.find("| uid=65534 |", at), std::string::npos)
      << "as nobody (with docker), never as whoever owns the checkout now\n"
      << calls.substr(at);
  EXPECT_FALSE(fs::exists(pgod.dir() + "/.pgod/.retire-b"));
  EXPECT_EQ(pgod.worker_pid("a"), a);
  EXPECT_FALSE(pgod.worker("b").has_value());
}

TEST_F(SupervisorTest, AStaleDirectoryIsDownedAndRemovedWithoutFollowingSymlinks) {
  const auto stale = pgod.dir() + "/old";
  fs::create_directories(stale + "/sub");
  std::ofstream(stale + "/sub/file") << "data";
  fs::create_directory_symlink(pgod.root() + "/outside", stale + "/escape");
  fs::create_directory(pgod.root() + "/outside");
  std::ofstream(pgod.root() + "/outside/keep") << "not yours";
  for (const auto& path : {stale, stale + "/sub", stale + "/sub/file"})
    ASSERT_EQ(lchown(path.c_str(), service_user_b().uid, service_user_b().gid), 0);
  fs::create_directory(pgod.dir() + "/Not_A_Service");  // not a valid name: never touched
  std::ofstream(pgod.dir() + "/x.stop").close();

  pgod.write_config(service("a", service_user_a()));
  pgod.start();
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return !fs::exists(stale); })) << pgod.log();
  const auto calls = pgod.calls();
  const auto at =
      calls.find("-p old -f " + pgod.dir() + "/.pgod/.retire-old/compose.retire.yaml down --remove-orphans");
  ASSERT_NE(at, std::string::npos) << calls;
  EXPECT_NE(calls.find("| uid=65534 |", at), std::string::npos) << "as nobody, not as the (chown-able) owner";
  EXPECT_TRUE(fs::exists(pgod.root() + "/outside/keep")) << "the symlink was removed, not followed";
  EXPECT_TRUE(fs::exists(pgod.dir() + "/Not_A_Service"));
  EXPECT_TRUE(fs::exists(pgod.dir() + "/x.stop"));
  EXPECT_TRUE(pgod.wait_ready({"a"}));
}

TEST_F(SupervisorTest, AStaleDirectoryWhoseDownFailsIsKept) {
  std::ofstream(pgod.standin_dir() + "/fail-down").close();
  const auto stale = pgod.dir() + "/old";
  fs::create_directories(stale);
  ASSERT_EQ(chown(stale.c_str(), service_user_b().uid, service_user_b().gid), 0);
  pgod.write_config(service("a", service_user_a()));
  pgod.start();
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return pgod.log().find("compose down failed") != std::string::npos; }))
      << pgod.log();
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(fs::exists(stale)) << "containers may still run: the directory stays for the next attempt";
}

TEST_F(SupervisorTest, SigtermStopsEveryWorkerAndDownsNothing) {
  start_two();
  const pid_t a = pgod.worker_pid("a"), b = pgod.worker_pid("b");
  EXPECT_EQ(pgod.stop(SIGTERM), 0);
  EXPECT_FALSE(process_exists(a));
  EXPECT_FALSE(process_exists(b));
  EXPECT_EQ(pgod.calls().find(" down"), std::string::npos) << "containers keep running";
  EXPECT_NE(pgod.log().find("[pgod] stopped"), std::string::npos);
}

TEST_F(SupervisorTest, TheHostCanListServicesAndRestartOneWorker) {
  start_two();
  const pid_t a = pgod.worker_pid("a"), b = pgod.worker_pid("b");
  auto listed = run_process({programs_dir() + "/pgod", "--status", "--rundir", pgod.rundir()});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_TRUE(std::regex_search(listed.out, std::regex("\na +running +" + std::to_string(a) + " +0"))) << listed.out;
  EXPECT_TRUE(std::regex_search(listed.out, std::regex("\nb +running +" + std::to_string(b) + " +0"))) << listed.out;

  auto restarted = run_process({programs_dir() + "/pgod", "--restart-worker", "b", "--rundir", pgod.rundir()});
  EXPECT_EQ(restarted.exit_code, 0) << restarted.err;
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    const pid_t now = pgod.worker_pid("b");
    return now != 0 && now != b;
  })) << pgod.log();
  EXPECT_EQ(pgod.worker_pid("a"), a);
  EXPECT_EQ(pgod.worker("b")->restarts, 1u);

  auto unknown = run_process({programs_dir() + "/pgod", "--restart-worker", "zz", "--rundir", pgod.rundir()});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no service \"zz\""), std::string::npos) << unknown.err;
}

TEST_F(SupervisorTest, TheControlSocketServesOnlyRootAndTheGatewayUser) {
  start_two();
  auto as = [&](const TestUser& user, const std::string& groups) {
    return run_process({"/usr/bin/setpriv", "--reuid=" + std::to_string(user.uid),
                        "--regid=" + std::to_string(user.gid), groups.empty() ? "--clear-groups" : "--groups=" + groups,
                        programs_dir() + "/pgod", "--status", "--rundir", pgod.rundir()});
  };
  auto gateway = as(gateway_user(), "");
  EXPECT_EQ(gateway.exit_code, 0) << gateway.err;
  EXPECT_NE(gateway.out.find("\na "), std::string::npos) << gateway.out;

  auto stranger = as(service_user_a(), "");
  EXPECT_EQ(stranger.exit_code, 1);
  EXPECT_NE(stranger.err.find("ermission denied"), std::string::npos) << "the socket's mode\n" << stranger.err;

  // In the socket's group but not the gateway's uid: the peer-credential check refuses it.
  auto member = as(service_user_a(), std::to_string(gateway_user().gid));
  EXPECT_EQ(member.exit_code, 1) << member.out;
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    return pgod.log().find("supervisor socket: refused a connection from uid " +
                           std::to_string(service_user_a().uid)) != std::string::npos;
  })) << pgod.log();
}

TEST_F(SupervisorTest, NfsSharesAreMountedBeforeTheWorkerAndUnmountedOnRemoval) {
  const auto shares = pgod.root() + "/shares";
  fs::create_directories(shares + "/share");
  std::ofstream(shares + "/share/on-the-server") << "x";
  const auto calls = pgod.root() + "/mount-calls";
  // Stand-ins for mount(8) and umount(8): this kernel has no NFS client, so a share is a bind
  // mount of a local directory (a real mount point); the host "bad" cannot be reached.
  const auto mount =
      script("mount", "echo \"mount $*\" >> " + calls +
                          "\n"
                          "for last; do :; done\n"
                          "case \"$*\" in *' bad:/'*) echo 'mount.nfs: Connection timed out' >&2; exit 32;; esac\n"
                          "exec mount --bind " +
                          shares + "/share \"$last\"\n");
  const auto umount = script("umount", "echo \"umount $*\" >> " + calls + "\nexec umount \"$1\"\n");
  struct Unmount {
    std::string path;
    ~Unmount() {
      try {
        run_process({"/bin/umount", "-l", path});  // normally unmounted by the test already: may fail
      } catch (const std::exception&) {
      }
    }
  } cleanup{pgod.datadir() + "/a"};

  pgod.write_config(service("a", service_user_a(), "mount = \"nfs://server/share\"\n") +
                    service("b", service_user_b(), "mount = \"nfs://bad/share\"\n"));
  pgod.start({"--datadir", pgod.datadir(), "--mount-program", mount, "--umount-program", umount});
  ASSERT_TRUE(pgod.wait_ready({"a"})) << pgod.log();
  EXPECT_NE(read_file(calls).find("mount -t nfs -o rw,nosuid,nodev,hard server:/share " + pgod.datadir() + "/a\n"),
            std::string::npos)
      << read_file(calls);
  EXPECT_TRUE(fs::exists(pgod.datadir() + "/a/on-the-server")) << "the share is mounted where the worker expects";

  ASSERT_TRUE(PgodHarness::wait_for([&]() { return !pgod.worker("b")->mount_error.empty(); })) << pgod.log();
  auto b = *pgod.worker("b");
  EXPECT_NE(b.state, "running") << "no worker on a missing share";
  EXPECT_NE(b.mount_error.find("bad:/share"), std::string::npos) << b.mount_error;
  EXPECT_GT(pgod.worker_pid("a"), 0) << "the other service carries on";

  pgod.write_config(service("b", service_user_b(), "mount = \"nfs://bad/share\"\n"));
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return !fs::exists(pgod.datadir() + "/a"); })) << pgod.log();
  EXPECT_NE(read_file(calls).find("umount " + pgod.datadir() + "/a\n"), std::string::npos) << read_file(calls);
  EXPECT_TRUE(fs::exists(shares + "/share/on-the-server")) << "unmounting never deletes the share's data";
}

TEST_F(SupervisorTest, TheGatewayRunsAsItsUserWithTheListeningSocketsAndIsRestarted) {
  const int ssh_port = free_loopback_port(), metrics_port = free_loopback_port();
  const auto probe = script("gateway-probe", "echo \"GATEWAY-PROBE uid=$(id -u) args=$*\" >&2\nexec sleep 1000\n");
  pgod.write_config(service("a", service_user_a()));
  pgod.start({"--gateway-program", probe, "-s", "127.0.0.1:" + std::to_string(ssh_port), "-m",
              "127.0.0.1:" + std::to_string(metrics_port)});
  std::string gateway_pid;
  const std::regex started("\\[pgod-gateway\\] gateway started as " + gateway_user().name + " \\(pid ([0-9]+)\\)");
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    const auto log = pgod.log();
    std::smatch found;
    if (!std::regex_search(log, found, started)) return false;
    gateway_pid = found[1].str();  // copied while `log` is alive
    return true;
  })) << pgod.log();
  const pid_t gateway = std::stoi(gateway_pid);
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return pgod.log().find("GATEWAY-PROBE") != std::string::npos; }));
  EXPECT_NE(pgod.log().find("GATEWAY-PROBE uid=" + std::to_string(gateway_user().uid) +
                            " args=--ssh-fd 3 --metrics-fd 4 --hooks-fd 5 --host-key-fd 6 --rundir " + pgod.rundir()),
            std::string::npos)
      << pgod.log();
  auto status = proc_status(gateway);
  EXPECT_EQ(status["NoNewPrivs"], "1");
  EXPECT_EQ(status["CapBnd"], "0000000000000000");
  // pgod bound the ports and the gateway holds them: a connection is accepted by the kernel.
  for (int port : {ssh_port, metrics_port}) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << "port " << port;
    close(fd);
  }
  ASSERT_EQ(kill(gateway, SIGKILL), 0);
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return count(pgod.log(), "[pgod-gateway] gateway started as") == 2; }, 5s))
      << pgod.log();
  EXPECT_EQ(pgod.stop(SIGTERM), 0);
}

TEST_F(SupervisorTest, SystemdHearsReadyStatusWatchdogAndStopping) {
  // A stand-in for systemd's notification socket.
  const auto path = pgod.root() + "/notify.sock";
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  timeval wait{0, 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  std::string heard;
  auto listen_for = [&](const std::string& what, std::chrono::seconds limit) {
    return PgodHarness::wait_for(
        [&]() {
          char buffer[4096];
          const ssize_t got = recv(fd, buffer, sizeof buffer, 0);
          if (got > 0) heard += std::string(buffer, static_cast<std::size_t>(got)) + "\n";
          return heard.find(what) != std::string::npos;
        },
        limit);
  };
  pgod.add_env("NOTIFY_SOCKET=" + path);
  pgod.add_env("WATCHDOG_USEC=200000");
  pgod.write_config(two_services());
  pgod.start();
  EXPECT_TRUE(listen_for("READY=1\nSTATUS=2 services, 2 workers running", 10s)) << heard;
  const auto before = count(heard, "WATCHDOG=1");
  EXPECT_TRUE(PgodHarness::wait_for(
      [&]() {
        listen_for("WATCHDOG=1", 1s);
        return count(heard, "WATCHDOG=1") >= before + 3;
      },
      2s))
      << "a ping every 100 ms\n"
      << heard;
  EXPECT_EQ(pgod.stop(SIGTERM), 0);
  EXPECT_TRUE(listen_for("STOPPING=1", 2s)) << heard;
  close(fd);
}

TEST_F(SupervisorTest, ASecondPgodOnTheSameRunDirectoryRefusesToStart) {
  start_two();
  const pid_t a = pgod.worker_pid("a");
  auto second = run_process({programs_dir() + "/pgod", "-c", pgod.config_path(), "-d", pgod.dir(), "--rundir",
                             pgod.rundir(), "--no-gateway", "--path-prefix", pgod.standin_dir()});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("another pgod runs with this --rundir"), std::string::npos) << second.err;
  EXPECT_EQ(pgod.worker_pid("a"), a) << "the first one carries on";
}

TEST(SupervisorStartTest, RefusesToRunAsAnotherUserThanRoot) {
  PgodHarness pgod;
  pgod.write_config(PgodHarness::service_toml("a", service_user_a().name, pgod.upstream("a").path()));
  auto result =
      run_process({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", programs_dir() + "/pgod",
                   "-c", pgod.config_path(), "-d", pgod.dir(), "--rundir", pgod.rundir(), "--no-gateway"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("pgod must run as root"), std::string::npos) << result.err;
  EXPECT_FALSE(fs::exists(pgod.dir())) << "nothing was touched";
}

TEST(SupervisorStartTest, AnInvalidConfigExitsOneAndTouchesNothing) {
  PgodHarness pgod;
  pgod.write_config("[[services]]\nname = \"a\"\n");
  auto result = run_process({programs_dir() + "/pgod", "-c", pgod.config_path(), "-d", pgod.dir(), "--rundir",
                             pgod.rundir(), "--no-gateway"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(pgod.config_path() + ":1:1:"), std::string::npos) << result.err;
  EXPECT_FALSE(fs::exists(pgod.dir()));
  EXPECT_FALSE(fs::exists(pgod.rundir()));
}

}  // namespace
}  // namespace pgod::test
