#include "pgod_harness.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <grp.h>
#include <kj/async-io.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "compose_programs.h"
#include "rpc_verbs.h"
#include "supervisor.capnp.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;

void must(const ProcessResult& result, const std::string& what) {
  if (result.exit_code != 0) throw std::runtime_error(what + " failed: " + result.err + result.out);
}

TestUser create_user(const std::string& name) {
  must(run_process({"/usr/sbin/useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                    "/usr/sbin/nologin", name}),
       "useradd " + name);
  struct passwd* entry = getpwnam(name.c_str());
  if (entry == nullptr) throw std::runtime_error("useradd " + name + " made no user");
  return {name, entry->pw_uid, entry->pw_gid};
}

// The users exist for the whole test program; userdel at exit removes them (and their groups).
struct Users {
  Users() {
    const std::string prefix = "pgt" + std::to_string(getpid() % 1000000);
    a = create_user(prefix + "a");
    b = create_user(prefix + "b");
    c = create_user(prefix + "c");
    gateway = create_user(prefix + "gw");
    dockergate = create_user(prefix + "dg");
  }
  ~Users() {
    for (const auto* user : {&a, &b, &c, &gateway, &dockergate}) {
      if (user->name.empty()) continue;
      // userdel refuses while a process of the user lingers (a gateway or a worker still
      // exiting after pgod stopped): try again for a while rather than leave the user behind.
      for (int attempt = 0; attempt < 50; ++attempt) {
        if (run_process({"/usr/sbin/userdel", user->name}).exit_code == 0 || getpwnam(user->name.c_str()) == nullptr)
          break;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    }
  }
  TestUser a, b, c, gateway, dockergate;
};

Users& users() {
  static Users instance;
  return instance;
}

void copy_program(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(to, std::filesystem::perms(0755));
}

struct Programs {
  Programs() {
    std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
    copy_program(PGOD_BIN, dir.path() + "/pgod");
    copy_program(PGOD_WORKER_BIN, dir.path() + "/pgod-worker");
    copy_program(PGOD_GATEWAY_BIN, dir.path() + "/pgod-gateway");
    copy_program(PGOD_DOCKERGATE_BIN, dir.path() + "/pgod-dockergate");
    copy_program(PGOD_EXEC_PROBE_BIN, dir.path() + "/exec-probe");
    copy_program(PGOD_CONFINEMENT_PROBE_BIN, dir.path() + "/confinement-probe");
  }
  TempDir dir;
};

template <class Call>
auto with_supervisor(const std::string& socket_path, Call call) {
  auto io = kj::setupAsyncIo();
  auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", socket_path.c_str())).wait(io.waitScope);
  auto stream = address->connect().wait(io.waitScope);
  capnp::TwoPartyClient client(*stream);
  return call(client.bootstrap().castAs<rpc::Supervisor>(), io.waitScope);
}

}  // namespace

const TestUser& service_user_a() { return users().a; }
const TestUser& service_user_b() { return users().b; }
const TestUser& service_user_c() { return users().c; }
const TestUser& gateway_user() { return users().gateway; }
const TestUser& dockergate_user() { return users().dockergate; }

gid_t docker_group() {
  struct group* entry = getgrnam("docker");
  if (entry == nullptr) throw std::runtime_error("no docker group on this host (install docker.io)");
  return entry->gr_gid;
}

const std::string& programs_dir() {
  static Programs programs;
  return programs.dir.path();
}

PgodHarness::PgodHarness() {
  std::filesystem::permissions(root_.path(), std::filesystem::perms(0755));
  bin_ = root_.path() + "/bin";
  dir_ = root_.path() + "/dir";
  rundir_ = root_.path() + "/run";
  datadir_ = root_.path() + "/data";
  repos_ = root_.path() + "/repos";
  log_file_ = root_.path() + "/pgod.log";
  for (const auto& path : {bin_, repos_}) std::filesystem::create_directory(path);
  // Workers of every test user append to calls.log.
  std::filesystem::permissions(bin_, std::filesystem::perms(0777));
  copy_program(PGOD_STANDIN_DOCKER, bin_ + "/docker");
  std::filesystem::create_symlink("docker", bin_ + "/docker-compose");
  std::ofstream(bin_ + "/calls.log").close();
  std::filesystem::permissions(bin_ + "/calls.log", std::filesystem::perms(0666));
  (void)users();  // created before any test needs them
}

PgodHarness::~PgodHarness() {
  if (pid_ > 0) stop(SIGKILL, 10s);
}

GitUpstream& PgodHarness::upstream(const std::string& name) {
  auto& slot = upstreams_[name];
  if (!slot) {
    slot = std::make_unique<GitUpstream>(repos_, name + ".git");
    slot->commit({{"compose.yaml", "services:\n  web:\n    image: busybox\n"}}, "compose file");
    run_process({"/bin/chmod", "-R", "a+rX", repos_});
  }
  return *slot;
}

std::string PgodHarness::service_toml(const std::string& name, const std::string& user, const std::string& repository,
                                      const std::string& extra) {
  return "[[services]]\nname = \"" + name + "\"\nuser = \"" + user + "\"\nrepository = \"file://" + repository +
         "\"\nbranch = \"main\"\n" + extra + "\n";
}

void PgodHarness::write_config(const std::string& text) const {
  // Replaced by rename, as editors do: the inotify watch must see it either way. Mode 0600
  // before the rename, as an admin's /etc/pgo.toml with secrets must be: pgod refuses a config
  // others can read while it holds env values or registry tokens.
  const std::string temporary = config_path() + ".new";
  std::ofstream(temporary) << text;
  std::filesystem::permissions(temporary, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::filesystem::rename(temporary, config_path());
}

void PgodHarness::start(std::vector<std::string> args, bool wait) {
  std::vector<std::string> argv = {
      programs_dir() + "/pgod", "-c", config_path(), "-d", dir_, "--rundir", rundir_, "--gateway-user",
      gateway_user().name};
  // The stand-in docker needs no daemon: no docker gate then. On a real engine, every call goes
  // through the gate, as in production.
  if (standin_) argv.insert(argv.end(), {"--path-prefix", bin_, "--docker-direct"});
  if (!standin_) argv.insert(argv.end(), {"--dockergate-user", dockergate_user().name});
  // On a real engine, the compose program under test (PGOD_TEST_COMPOSE), never a guess.
  if (!standin_) argv.insert(argv.end(), {"--compose", compose_under_test()});
  bool gateway = false;
  for (const auto& arg : args) gateway = gateway || arg.starts_with("--gateway-program");
  if (!gateway) argv.push_back("--no-gateway");
  bool host_key = false;
  for (const auto& arg : args) host_key = host_key || arg == "--host-key";
  // Never the system's /etc/pgo: a key of the test's own (pgod makes it on first start).
  if (gateway && !host_key) argv.insert(argv.end(), {"--host-key", root_.path() + "/ssh_host_ed25519_key"});
  bool hooks = false;
  for (const auto& arg : args) hooks = hooks || arg == "--hooks";
  // Never the default 127.0.0.1:9113, which a pgod already running on this host may hold.
  if (gateway && !hooks) argv.insert(argv.end(), {"--hooks", "127.0.0.1:" + std::to_string(free_loopback_port())});
  argv.insert(argv.end(), args.begin(), args.end());

  std::vector<char*> pointers;
  for (auto& arg : argv) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  std::vector<char*> env;
  for (char** entry = environ; *entry != nullptr; ++entry) env.push_back(*entry);
  for (auto& entry : extra_env_) env.push_back(entry.data());
  env.push_back(nullptr);
  const int log_fd = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::system_error(errno, std::generic_category(), "open " + log_file_);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // pgod ends with the test program even when a test crashes (it stops its workers in turn).
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) _exit(127);
    execve(pointers[0], pointers.data(), env.data());
    _exit(127);
  }
  const int error = pid_ < 0 ? errno : 0;
  close(log_fd);
  if (error != 0) throw std::system_error(error, std::generic_category(), "fork for pgod");
  if (!wait) return;
  const bool up = wait_for([this]() {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("pgod exited at start: " + log());
    }
    try {
      workers();
      return true;
    } catch (const std::exception&) {
      return false;
    }
  });
  if (!up) throw std::runtime_error("pgod's socket never answered: " + log());
}

void PgodHarness::send_signal(int signal_number) const {
  if (pid_ > 0) kill(pid_, signal_number);
}

int PgodHarness::stop(int signal_number, std::chrono::seconds limit) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal_number);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(20ms);
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<WorkerRow> PgodHarness::workers() const {
  return with_supervisor(rundir_ + "/supervisor.sock", [](rpc::Supervisor::Client client, kj::WaitScope& wait) {
    auto response = client.listServicesRequest().send().wait(wait);
    std::vector<WorkerRow> rows;
    for (auto info : response.getServices())
      rows.push_back({info.getName().cStr(), worker_state_name(info.getWorkerState()), info.getWorkerPid(),
                      info.getRestarts(), info.getLastExit().cStr(), info.getMountError().cStr()});
    return rows;
  });
}

std::optional<WorkerRow> PgodHarness::worker(const std::string& name) const {
  for (auto& row : workers())
    if (row.name == name) return row;
  return std::nullopt;
}

pid_t PgodHarness::worker_pid(const std::string& name) const {
  auto row = worker(name);
  return row && row->state == "running" ? row->pid : 0;
}

bool PgodHarness::wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

bool PgodHarness::wait_ready(const std::vector<std::string>& names, std::chrono::milliseconds limit) {
  return wait_for(
      [&]() {
        const auto text = log();
        for (const auto& name : names)
          if (worker_pid(name) == 0 || text.find("[" + name + "] state STARTING -> OK") == std::string::npos)
            return false;
        return true;
      },
      limit);
}

std::string PgodHarness::log() const { return read_file(log_file_); }
std::string PgodHarness::calls() const { return read_file(bin_ + "/calls.log"); }

std::map<std::string, std::string> proc_status(pid_t pid) {
  std::map<std::string, std::string> fields;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    fields[line.substr(0, colon)] = value;
  }
  return fields;
}

std::map<int, std::string> proc_fds(pid_t pid) {
  std::map<int, std::string> fds;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
    std::error_code ignored;
    fds[std::stoi(entry.path().filename().string())] = std::filesystem::read_symlink(entry.path(), ignored).string();
  }
  return fds;
}

pid_t gateway_pid(const std::string& pgod_log) {
  static const std::regex started("\\[pgod-gateway\\] gateway started as \\S+ \\(pid ([0-9]+)\\)");
  pid_t pid = 0;
  for (auto it = std::sregex_iterator(pgod_log.begin(), pgod_log.end(), started); it != std::sregex_iterator(); ++it)
    pid = std::stoi((*it)[1].str());
  return pid;
}

std::size_t gateway_starts(const std::string& pgod_log) {
  const std::string line = "[pgod-gateway] gateway started as ";
  std::size_t count = 0;
  for (auto at = pgod_log.find(line); at != std::string::npos; at = pgod_log.find(line, at + 1)) ++count;
  return count;
}

}  // namespace pgod::test
