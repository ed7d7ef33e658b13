#include "docker_env.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "git_fixture.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::test {
namespace {

const std::string kDocker = "/usr/bin/docker";

pid_t spawn_logged(const std::vector<std::string>& args, const std::string& log_path) {
  const UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, log.get(), 2);
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
  return pid;
}

void stop_process(pid_t& pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 300; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) {
      pid = -1;
      return;
    }
    usleep(100'000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  pid = -1;
}

void require(const ProcessResult& result, const std::string& what) {
  if (result.exit_code != 0) throw std::runtime_error(what + " failed: " + result.out + result.err);
}

}  // namespace

namespace {
DockerEnvironment* shared_engine = nullptr;
}  // namespace

DockerEnvironment* shared_docker_environment() { return shared_engine; }
void share_docker_environment(DockerEnvironment* engine) { shared_engine = engine; }

ProcessResult run_with_env(const std::vector<std::string>& env, const std::vector<std::string>& argv,
                           const std::string& stdin_text) {
  std::vector<std::string> full = {"/usr/bin/env"};
  full.insert(full.end(), env.begin(), env.end());
  full.insert(full.end(), argv.begin(), argv.end());
  return run_process(full, stdin_text);
}

ProcessResult DockerEnvironment::docker(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {kDocker};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_with_env({"DOCKER_CONFIG=" + dir_.path() + "/docker-config"}, argv);
}

DockerEnvironment::DockerEnvironment() {
  if (docker({"info"}).exit_code != 0) {
    dockerd_ =
        spawn_logged({"/usr/sbin/dockerd", "--pidfile", dir_.path() + "/dockerd.pid"}, dir_.path() + "/dockerd.log");
    bool up = false;
    for (int i = 0; i < 120 && !up; ++i) {
      usleep(250'000);
      up = docker({"info"}).exit_code == 0;
    }
    if (!up) throw std::runtime_error("dockerd did not come up:\n" + read_file(dir_.path() + "/dockerd.log"));
  }

  // The registry, with one user.
  const int port = free_loopback_port();
  registry_ = "127.0.0.1:" + std::to_string(port);
  auto htpasswd = run_process({"/usr/bin/htpasswd", "-Bbn", user_, token_});
  require(htpasswd, "htpasswd");
  std::ofstream(dir_.path() + "/htpasswd") << htpasswd.out;
  std::ofstream(dir_.path() + "/registry.yml") << "version: 0.1\n"
                                                  "storage:\n  filesystem:\n    rootdirectory: "
                                               << dir_.path()
                                               << "/registry\n"
                                                  "http:\n  addr: "
                                               << registry_
                                               << "\n"
                                                  "auth:\n  htpasswd:\n    realm: pgod-test\n    path: "
                                               << dir_.path() << "/htpasswd\n";
  registry_pid_ =
      spawn_logged({"/usr/bin/docker-registry", "serve", dir_.path() + "/registry.yml"}, dir_.path() + "/registry.log");

  // A busybox image made here, pushed there, and removed locally so that a pull is real.
  const auto root = dir_.path() + "/rootfs";
  std::filesystem::create_directories(root + "/bin");
  std::filesystem::copy_file("/bin/busybox", root + "/bin/busybox");
  std::filesystem::create_symlink("busybox", root + "/bin/sh");
  std::filesystem::create_symlink("busybox", root + "/bin/sleep");
  std::filesystem::create_symlink("busybox", root + "/bin/echo");
  const auto tarball = dir_.path() + "/rootfs.tar";
  require(run_process({"/bin/tar", "-C", root, "-cf", tarball, "."}), "tar");
  image_ = registry_ + "/pgod/busybox:test";
  require(docker({"import", tarball, image_}), "docker import");
  bool logged_in = false;
  for (int i = 0; i < 50 && !logged_in; ++i) {
    logged_in = run_with_env({"DOCKER_CONFIG=" + dir_.path() + "/docker-config"},
                             {kDocker, "login", "-u", user_, "--password-stdin", registry_}, token_)
                    .exit_code == 0;
    if (!logged_in) usleep(100'000);
  }
  if (!logged_in)
    throw std::runtime_error("cannot log in to the test registry:\n" + read_file(dir_.path() + "/registry.log"));
  require(docker({"push", image_}), "docker push");
  require(docker({"logout", registry_}), "docker logout");
  require(docker({"rmi", image_}), "docker rmi");
}

DockerEnvironment::~DockerEnvironment() {
  stop_process(registry_pid_);
  stop_process(dockerd_);
}

std::vector<std::string> DockerEnvironment::containers(const std::string& project, bool all) const {
  const auto result =
      docker({"ps", all ? "-aq" : "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=" + project});
  std::vector<std::string> ids;
  std::istringstream lines(result.out);
  for (std::string id; std::getline(lines, id);)
    if (!id.empty()) ids.push_back(id);
  return ids;
}

}  // namespace pgod::test
