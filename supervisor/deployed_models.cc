#include "deployed_models.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "command_grammar.h"
#include "secret.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::supervisor {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// What is read of the judge's output; the rest is drained and dropped. A model refused for a
// thousand reasons still fits, a judge gone wrong cannot fill pgod's memory.
constexpr std::size_t kMaxStdout = 64 * 1024;
constexpr std::size_t kMaxStderr = 4 * 1024;
constexpr std::size_t kMaxReasons = 100;
// The judge's exit codes (pgod-worker --judge-saved-model).
constexpr int kAccepted = 0;
constexpr int kRefused = 1;
constexpr int kCannotJudge = 2;
// As the worker redacts: env values shorter than this are too likely to be ordinary words.
constexpr std::size_t kMinRedactedLength = 8;

ModelVerdict unjudged(std::string why) { return {ModelVerdict::Outcome::kUnjudged, {printable(why)}}; }

// The values the worker would redact from its own messages: the judge is given none of them,
// but the model it reads holds what compose interpolated.
std::vector<Secret> secrets_of(const config::Service& service) {
  std::vector<Secret> secrets;
  // A repository URL is a secret when it holds credentials (the config check's rule).
  if (redact_url(service.repository) != service.repository) secrets.emplace_back(service.repository);
  for (const auto& var : service.env)
    if (var.value.reveal().size() >= kMinRedactedLength) secrets.push_back(var.value);
  for (const auto& login : service.registries) secrets.push_back(login.token);
  return secrets;
}

struct Collected {
  std::string out, err;
  bool out_cut = false;
  int status = 0;
  bool timed_out = false;
};

// Reads the child's stdout and stderr until it exits and both close, or until `timeout`
// (then it is killed). Always reaps it.
Collected collect(pid_t pid, UniqueFd out, UniqueFd err, milliseconds timeout) {
  Collected result;
  const auto deadline = Clock::now() + timeout;
  std::array<UniqueFd*, 2> fds{&out, &err};
  std::array<std::string*, 2> into{&result.out, &result.err};
  const std::array<std::size_t, 2> limits{kMaxStdout, kMaxStderr};
  for (auto* fd : fds) fcntl(fd->get(), F_SETFL, O_NONBLOCK);
  bool exited = false;
  for (;;) {
    if (!exited) {
      int status = 0;
      const pid_t reaped = waitpid(pid, &status, WNOHANG);
      if (reaped == pid) {
        exited = true;
        result.status = status;
      }
    }
    if (exited && !out && !err) break;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.timed_out = !exited;  // exited, with its output held open by another process: done
      break;
    }
    std::array<pollfd, 2> set{};
    nfds_t count = 0;
    std::array<std::size_t, 2> which{};
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (!*fds[i]) continue;
      set[count] = {fds[i]->get(), POLLIN, 0};
      which[count++] = i;
    }
    // Short waits while it runs: its exit is noticed by waitpid, not by a poll event.
    const int wait_ms = static_cast<int>(std::min<long long>(left.count(), exited ? left.count() : 50));
    if (poll(set.data(), count, wait_ms) < 0 && errno != EINTR) break;
    for (nfds_t k = 0; k < count; ++k) {
      if (set[k].revents == 0) continue;
      const std::size_t i = which[k];
      char buffer[4096];
      const ssize_t got = read(fds[i]->get(), buffer, sizeof buffer);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        fds[i]->reset();
        continue;
      }
      const auto room = limits[i] - std::min(limits[i], into[i]->size());
      into[i]->append(buffer, std::min(room, static_cast<std::size_t>(got)));
      if (i == 0 && static_cast<std::size_t>(got) > room) result.out_cut = true;
    }
  }
  if (!exited) {
    kill(-pid, SIGKILL);  // its process group (spawn_confined made it a session leader): what it started too
    kill(pid, SIGKILL);
    int status = 0;
    retry_eintr([&] { return waitpid(pid, &status, 0); });
    result.status = status;
  }
  return result;
}

// The non-empty lines of `text`, secrets redacted and control characters escaped (they go to
// a root terminal); at most kMaxReasons, `*cut` set when there were more.
std::vector<std::string> lines_of(const std::string& text, const std::vector<Secret>& secrets, bool* cut) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) {
      if (lines.size() == kMaxReasons) {
        *cut = true;
        break;
      }
      lines.push_back(printable(redact(std::string_view(text).substr(start, end - start), secrets)));
    }
    start = end + 1;
  }
  return lines;
}

}  // namespace

ModelVerdict judge_deployed_model(const config::Service& service, const ModelJudge& judge) {
  // Whether there is a model at all, by lstat only: its content is the judge's to read.
  struct stat info {};
  const auto state = judge.layout.state(service.name);
  if (lstat(state.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) return {};
  const auto model = state + "/compose.validated.yaml";
  if (lstat(model.c_str(), &info) != 0) {
    if (errno == ENOENT) return {};
    return unjudged(fmt::format("{}: {}", model, errno_text(errno)));
  }

  // The service's user and groups; not the docker group: judging a file needs no engine.
  auto identity = lookup_user(service.user, false, nullptr);
  if (!identity) return unjudged(identity.error());
  auto settings = judge_settings(service, *identity, judge.layout, judge.defaults);
  auto memfd = sealed_memfd(service.name, settings.asBytes());
  if (!memfd) return unjudged(memfd.error());
  int out_pipe[2], err_pipe[2];
  if (auto piped = check_call(pipe2(out_pipe, O_CLOEXEC), "pipe2"); !piped) return unjudged(piped.error());
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (auto piped = check_call(pipe2(err_pipe, O_CLOEXEC), "pipe2"); !piped) return unjudged(piped.error());
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);

  SpawnSpec spec = worker_spawn_spec(*identity, *judge.filter, true);
  spec.program = judge.worker_program;
  spec.argv = {spec.program, "--settings-fd", "3", "--judge-saved-model"};
  spec.fds = {memfd->get()};
  spec.stdout_fd = out_write.get();
  spec.stderr_fd = err_write.get();
  auto pid = spawn_confined(spec);
  if (!pid) return unjudged(pid.error());
  out_write.reset();
  err_write.reset();
  const auto result = collect(*pid, std::move(out_read), std::move(err_read), judge.timeout);

  const auto secrets = secrets_of(service);
  if (result.timed_out)
    return unjudged(fmt::format("{} gave no verdict within {} s: killed", judge.worker_program,
                                std::chrono::duration_cast<std::chrono::seconds>(judge.timeout).count()));
  const int code = WIFEXITED(result.status) ? WEXITSTATUS(result.status) : -1;
  bool cut = result.out_cut;
  auto reasons = lines_of(result.out, secrets, &cut);
  if (code == kAccepted) return {ModelVerdict::Outcome::kAccepted, {}};
  // A refusal names its reasons: exit 1 without any is a judge that failed.
  if (code == kRefused && !reasons.empty()) {
    if (cut) reasons.push_back("(more reasons not shown)");
    return {ModelVerdict::Outcome::kRefused, std::move(reasons)};
  }
  if (code == kCannotJudge && !reasons.empty()) return {ModelVerdict::Outcome::kUnjudged, {reasons.front()}};
  // It failed before judging (it prints why on stderr): not a verdict.
  bool ignored = false;
  const auto errors = lines_of(result.err, secrets, &ignored);
  return {ModelVerdict::Outcome::kUnjudged,
          {fmt::format("{} ended with {}{}{}", judge.worker_program, describe_exit(result.status),
                       errors.empty() ? "" : ": ", errors.empty() ? "" : errors.back())}};
}

}  // namespace pgod::supervisor
