// Stands in for pgod-worker, started by pgod exactly as a worker is (same user, groups,
// no_new_privs, seccomp filter, fds), and reports from inside that confinement: which
// forbidden calls fail and how, and whether what a worker needs still works (docker version,
// docker-compose version, a libgit2 clone of the service's repository). One "PROBE key=value"
// line each on stderr, then it waits to be stopped, so pgod does not restart it.
#include <capnp/serialize.h>
#include <fcntl.h>
#include <git2.h>
#include <linux/bpf.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "settings.capnp.h"

namespace {

void report(const char* key, const std::string& value) {
  std::fprintf(stderr, "PROBE %s=%s\n", key, value.c_str());
  std::fflush(stderr);
}

std::string outcome(long result) { return result < 0 ? strerrorname_np(errno) : "allowed"; }

std::string run(std::vector<std::string> argv, const std::vector<std::string>& env) {
  std::vector<char*> args, envp;
  for (auto& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  std::vector<std::string> env_copy = env;
  for (auto& entry : env_copy) envp.push_back(entry.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return std::string("spawn-") + strerrorname_np(error);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? "exit-" + std::to_string(WEXITSTATUS(status))
                           : "signal-" + std::to_string(WTERMSIG(status));
}

}  // namespace

int main() {
  capnp::StreamFdMessageReader message(3);
  auto settings = message.getRoot<pgod::rpc::ServiceSettings>();
  const std::string state_dir = settings.getStateDir().cStr();

  report("uid", std::to_string(getuid()));
  report("mount", outcome(mount("none", "/mnt", "tmpfs", 0, nullptr)));
  report("unshare", outcome(unshare(CLONE_NEWUSER)));
  report("setns", outcome(setns(0, CLONE_NEWNET)));
  report("ptrace", outcome(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)));
  union bpf_attr attr {};
  report("bpf", outcome(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr)));
  report("keyctl", outcome(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0)));
  report("setuid0", outcome(setuid(0)));
  const long clone_result = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (clone_result == 0) _exit(0);  // the child, had it been allowed
  if (clone_result > 0) waitpid(static_cast<pid_t>(clone_result), nullptr, 0);
  report("clone_newuser", outcome(clone_result));

  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + state_dir,
                                  "DOCKER_CONFIG=" + state_dir + "/docker"};
  // dockerd's own socket first (the worker's user has no docker group), then its socket on the
  // docker gate, as the worker's environment names it.
  auto direct = env;
  direct.push_back("DOCKER_HOST=unix:///var/run/docker.sock");
  report("docker_direct", run({"docker", "version"}, direct));
  if (settings.getDockerHost().size() > 0) env.push_back(std::string("DOCKER_HOST=") + settings.getDockerHost().cStr());
  report("docker_version", run({"docker", "version"}, env));
  report("compose_version", run({"docker-compose", "version"}, env));

  setenv("HOME", state_dir.c_str(), 1);
  git_libgit2_init();
  git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
  git_repository* clone = nullptr;
  const int cloned = git_clone(&clone, settings.getRepository().cStr(), (state_dir + "/probe-clone").c_str(), nullptr);
  report("git_clone", cloned == 0 && access((state_dir + "/probe-clone/compose.yaml").c_str(), R_OK) == 0
                          ? "ok"
                          : std::string("failed: ") + (git_error_last() ? git_error_last()->message : "?"));
  git_repository_free(clone);
  git_libgit2_shutdown();
  report("done", "1");
  pause();  // SIGTERM from pgod ends it
  return 0;
}
