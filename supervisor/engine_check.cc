#include "engine_check.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <vector>

#include "system_call.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::supervisor {
namespace {

constexpr auto kTimeout = std::chrono::seconds(10);
constexpr std::size_t kMaxOutput = 16 * 1024;

struct Answer {
  int status = -1;
  std::string out;
  std::string error;
};

// `docker info` with its output on a pipe, killed when it outlives kTimeout.
Answer ask_docker_info(const std::string& docker_socket) {
  Answer answer;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return {-1, "", os_error("pipe2", "", errno)};
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> argv = {"docker", "-H",       "unix://" + docker_socket,
                                   "info",   "--format", "{{range .SecurityOptions}}{{.}} {{end}}"};
  std::vector<char*> args;
  for (auto& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, "docker", &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end = UniqueFd();
  if (spawned != 0) return {-1, "", os_error("run", "docker", spawned)};
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  std::array<char, 4096> buffer{};
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd fd{read_end.get(), POLLIN, 0};
    if (left.count() <= 0 || retry_eintr([&] { return poll(&fd, 1, static_cast<int>(left.count())); }) <= 0) {
      kill(pid, SIGKILL);
      answer.error = "docker info did not answer within 10 s";
      break;
    }
    const ssize_t got = retry_eintr([&] { return read(read_end.get(), buffer.data(), buffer.size()); });
    if (got <= 0) break;
    if (answer.out.size() < kMaxOutput) answer.out.append(buffer.data(), static_cast<std::size_t>(got));
  }
  int status = 0;
  if (retry_eintr([&] { return waitpid(pid, &status, 0); }) == pid && WIFEXITED(status))
    answer.status = WEXITSTATUS(status);
  return answer;
}

}  // namespace

std::string describe_docker_engine(const std::string& docker_socket) {
  const Answer answer = ask_docker_info(docker_socket);
  if (answer.status != 0)
    return fmt::format("docker engine: not reachable at {}{}", docker_socket,
                       answer.error.empty() ? "" : " (" + answer.error + ")");
  if (answer.out.find("name=userns") != std::string::npos)
    return "docker engine: user-namespace remapping is on (a container's root is an unprivileged host user)";
  return "docker engine: user-namespace remapping is off: a container's root is the host's root, so a bind source "
         "swapped between the docker gate's check and dockerd's mount is not contained (SECURITY.md, Boundary 5; "
         "dockerd's userns-remap closes it)";
}

}  // namespace pgod::supervisor
