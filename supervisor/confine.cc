#include "confine.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

#include "system_call.h"
#include "unique_fd.h"

namespace pgod::supervisor {
namespace {

constexpr const char* kDockerGroup = "docker";
constexpr std::chrono::milliseconds kExecTimeout{5000};

std::vector<char> lookup_buffer() {
  const long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  return std::vector<char>(size > 0 ? static_cast<std::size_t>(size) : 16384);
}

std::optional<gid_t> docker_gid() {
  struct group entry {};
  struct group* found = nullptr;
  std::vector<char> buffer(65536);  // group entries list members: they can be long
  if (getgrnam_r(kDockerGroup, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    return std::nullopt;
  return entry.gr_gid;
}

void add_group(std::vector<gid_t>& groups, gid_t gid) {
  if (std::find(groups.begin(), groups.end(), gid) == groups.end()) groups.push_back(gid);
}

// The steps of the child, for the error report.
enum class Step : int {
  kSignals = 1,
  kSession,
  kFds,
  kCloseFds,
  kDirectory,
  kBoundingSet,
  kAmbient,
  kGroups,
  kGid,
  kUid,
  kCapabilities,
  kRootRegained,
  kNoNewPrivs,
  kParentDeath,
  kParentGone,
  kSeccomp,
  kExec,
};

const char* step_name(Step step) {
  switch (step) {
    case Step::kSignals:
      return "resetting signals";
    case Step::kSession:
      return "setsid";
    case Step::kFds:
      return "moving the inherited fds";
    case Step::kCloseFds:
      return "closing the other fds";
    case Step::kDirectory:
      return "chdir /";
    case Step::kBoundingSet:
      return "emptying the capability bounding set";
    case Step::kAmbient:
      return "clearing ambient capabilities";
    case Step::kGroups:
      return "setgroups";
    case Step::kGid:
      return "setresgid";
    case Step::kUid:
      return "setresuid";
    case Step::kCapabilities:
      return "capset (emptying every capability set)";
    case Step::kRootRegained:
      return "checking that root cannot be regained (it could)";
    case Step::kNoNewPrivs:
      return "PR_SET_NO_NEW_PRIVS";
    case Step::kParentDeath:
      return "PR_SET_PDEATHSIG";
    case Step::kParentGone:
      return "checking the parent (pgod exited)";
    case Step::kSeccomp:
      return "installing the seccomp filter";
    case Step::kExec:
      return "execve";
  }
  return "unknown step";
}

struct ChildError {
  int step;
  int error;
};

[[noreturn]] void child_fail(int report_fd, Step step, int error) {
  const ChildError report{static_cast<int>(step), error};
  // Nothing to do if the report cannot be written: the parent sees a child that exited 127.
  [[maybe_unused]] auto written = write(report_fd, &report, sizeof report);
  _exit(127);
}

// ---- the child, between fork and exec ---------------------------------------------------------
// Only system calls from here to exec: the parent may hold locks (malloc, spdlog) that no
// longer have an owner in this process. So nothing below allocates, formats or logs; each step
// either succeeds or ends the child through child_fail().

void reset_signals(int report_fd) {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
    // SIGKILL, SIGSTOP and glibc's internal signals refuse: that is fine.
    sigaction(signal_number, &default_action, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) child_fail(report_fd, Step::kSignals, errno);
}

// The lowest fd above every fd the program receives (0-2 and spec.fds at 3, 4, …).
int first_free_fd(const SpawnSpec& spec) { return 3 + static_cast<int>(spec.fds.size()); }

// Puts /dev/null at 0, the given stdout and stderr at 1 and 2, and spec.fds at 3, 4, …; dup2
// leaves the targets without close-on-exec. Returns the report pipe's new number.
int place_fds(const SpawnSpec& spec, int report_fd, int null_fd) {
  const int count = static_cast<int>(spec.fds.size());
  const int first_free = first_free_fd(spec);
  // The report pipe first goes above every target fd, so nothing below overwrites it.
  const int report = fcntl(report_fd, F_DUPFD_CLOEXEC, first_free);
  if (report < 0) child_fail(report_fd, Step::kFds, errno);
  report_fd = report;
  // stdout and stderr, when given, are copied above every target too, then put in place last.
  const std::array<int, 2> std_targets{spec.stdout_fd, spec.stderr_fd};
  std::array<int, 2> std_copies{-1, -1};
  for (std::size_t i = 0; i < std_targets.size(); ++i) {
    if (std_targets[i] < 0) continue;
    std_copies[i] = fcntl(std_targets[i], F_DUPFD_CLOEXEC, first_free);
    if (std_copies[i] < 0) child_fail(report_fd, Step::kFds, errno);
  }
  if (dup2(null_fd, STDIN_FILENO) < 0) child_fail(report_fd, Step::kFds, errno);
  // Then the fds move to 3, 4, … through copies above every target, so no source is
  // overwritten before it is moved.
  std::array<int, 8> copies{};
  if (count > static_cast<int>(copies.size())) child_fail(report_fd, Step::kFds, E2BIG);
  for (int i = 0; i < count; ++i) {
    copies[i] = fcntl(spec.fds[i], F_DUPFD_CLOEXEC, first_free);
    if (copies[i] < 0) child_fail(report_fd, Step::kFds, errno);
  }
  for (int i = 0; i < count; ++i)
    if (dup2(copies[i], 3 + i) < 0) child_fail(report_fd, Step::kFds, errno);
  for (std::size_t i = 0; i < std_copies.size(); ++i)
    if (std_copies[i] >= 0 && dup2(std_copies[i], STDOUT_FILENO + static_cast<int>(i)) < 0)
      child_fail(report_fd, Step::kFds, errno);
  return report_fd;
}

// Root becomes the service's user. First, while still root, the bounding set is emptied: no
// capability can come back through exec, not even for a root service.
void become_user(const Identity& id, int report_fd) {
  for (int capability = 0; capability <= 63; ++capability) {
    if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      child_fail(report_fd, Step::kBoundingSet, errno);
    }
  }
  if (setgroups(id.groups.size(), id.groups.data()) != 0) child_fail(report_fd, Step::kGroups, errno);
  if (setresgid(id.gid, id.gid, id.gid) != 0) child_fail(report_fd, Step::kGid, errno);
  if (setresuid(id.uid, id.uid, id.uid) != 0) child_fail(report_fd, Step::kUid, errno);
  // A non-root uid lost every capability with setresuid; a root service keeps uid 0, so its
  // sets are emptied here (the inheritable set would otherwise survive exec).
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2]{};
  if (syscall(SYS_capset, &header, none) != 0) child_fail(report_fd, Step::kCapabilities, errno);
}

// Proof, for a non-root user, that the change cannot be undone: setuid(0) and setgid(0) fail
// and every uid is the user's.
void check_root_not_regained(const Identity& id, int report_fd) {
  uid_t real = 0, effective = 0, saved = 0;
  if (setuid(0) == 0 || setgid(0) == 0 || getresuid(&real, &effective, &saved) != 0 || real != id.uid ||
      effective != id.uid || saved != id.uid)
    child_fail(report_fd, Step::kRootRegained, EPERM);
}

// After the uid change, which clears the parent-death signal. A parent that exited before it
// was set would never send it: then the child gives up.
void die_with_parent(int signal_number, pid_t parent, int report_fd) {
  if (prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0) child_fail(report_fd, Step::kParentDeath, errno);
  if (getppid() != parent) child_fail(report_fd, Step::kParentGone, ESRCH);
}

// The confinement steps in order (confine.h lists them); no step may move before another.
[[noreturn]] void run_child(const SpawnSpec& spec, char* const* argv, char* const* envp, int report_fd, int null_fd,
                            pid_t parent) {
  reset_signals(report_fd);
  // Its own session: a Ctrl-C on pgod's terminal must not reach the workers behind pgod's back.
  if (setsid() < 0) child_fail(report_fd, Step::kSession, errno);
  report_fd = place_fds(spec, report_fd, null_fd);
  // Everything else closes at exec (the report pipe must live until then).
  if (syscall(SYS_close_range, first_free_fd(spec), ~0U, CLOSE_RANGE_CLOEXEC) != 0)
    child_fail(report_fd, Step::kCloseFds, errno);
  if (chdir("/") != 0) child_fail(report_fd, Step::kDirectory, errno);
  umask(022);
  if (spec.change_identity) become_user(spec.identity, report_fd);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) child_fail(report_fd, Step::kAmbient, errno);
  if (spec.change_identity && spec.identity.uid != 0) check_root_not_regained(spec.identity, report_fd);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(report_fd, Step::kNoNewPrivs, errno);
  if (spec.parent_death_signal != 0) die_with_parent(spec.parent_death_signal, parent, report_fd);
  if (spec.seccomp != nullptr) {
    if (int result = install_seccomp_program(*spec.seccomp); result != 0)
      child_fail(report_fd, Step::kSeccomp, -result);
  }
  execve(spec.program.c_str(), argv, envp);
  child_fail(report_fd, Step::kExec, errno);
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (const auto& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

Expected<Identity, std::string> lookup_user(const std::string& user, bool with_docker_group, std::string* note) {
  struct passwd entry {};
  struct passwd* found = nullptr;
  auto buffer = lookup_buffer();
  const int error = getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (found == nullptr)
    return Unexpected{error != 0 ? fmt::format("looking up user \"{}\": {}", user, errno_text(error))
                                 : fmt::format("user \"{}\" does not exist", user)};
  Identity identity{entry.pw_name, entry.pw_uid, entry.pw_gid, {}, entry.pw_dir ? entry.pw_dir : "/"};
  int count = 64;
  std::vector<gid_t> groups(count);
  while (getgrouplist(identity.user.c_str(), identity.gid, groups.data(), &count) < 0) groups.resize(count);
  groups.resize(count);
  identity.groups = std::move(groups);
  const auto docker = docker_gid();
  if (with_docker_group) {
    if (docker)
      add_group(identity.groups, *docker);
    else if (note != nullptr)
      *note = "there is no \"docker\" group: the docker gate cannot reach dockerd";
  } else if (docker) {
    // Root on the host: only the docker gate holds it, even when an admin made a service's user
    // a member.
    std::erase(identity.groups, *docker);
  }
  return identity;
}

Identity identity_of_uid(uid_t uid, gid_t fallback_gid, bool with_docker_group) {
  struct passwd entry {};
  struct passwd* found = nullptr;
  auto buffer = lookup_buffer();
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    if (auto identity = lookup_user(entry.pw_name, with_docker_group, nullptr)) return *identity;
  }
  Identity identity{std::to_string(uid), uid, fallback_gid, {fallback_gid}, "/"};
  if (with_docker_group)
    if (auto gid = docker_gid()) add_group(identity.groups, *gid);
  return identity;
}

SpawnSpec worker_spawn_spec(const Identity& identity, const SeccompProgram& filter, bool change_identity) {
  SpawnSpec spec;
  spec.identity = identity;
  spec.parent_death_signal = SIGTERM;
  spec.change_identity = change_identity;
  spec.seccomp = &filter;
  spec.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + identity.home,
              "USER=" + identity.user, "LOGNAME=" + identity.user};
  return spec;
}

Expected<UniqueFd, std::string> sealed_memfd(const std::string& name, kj::ArrayPtr<const kj::byte> bytes) {
  UniqueFd fd(memfd_create(("pgod-settings-" + name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return Unexpected{os_error("memfd_create for", name, errno)};
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t written = retry_eintr([&] { return write(fd.get(), bytes.begin() + done, bytes.size() - done); });
    if (written <= 0) return Unexpected{os_error("writing the settings of", name, errno)};
    done += static_cast<std::size_t>(written);
  }
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
    return Unexpected{os_error("sealing the settings of", name, errno)};
  if (lseek(fd.get(), 0, SEEK_SET) != 0) return Unexpected{os_error("rewinding the settings of", name, errno)};
  return fd;
}

Expected<pid_t, std::string> spawn_confined(const SpawnSpec& spec) {
  if (spec.program.empty() || spec.program.front() != '/')
    return Unexpected{fmt::format("{}: the program must be an absolute path", spec.program)};
  auto argv = c_strings(spec.argv);
  auto envp = c_strings(spec.env);
  int pipe_fds[2];
  if (auto piped = check_call(pipe2(pipe_fds, O_CLOEXEC), "pipe2"); !piped) return Unexpected{piped.error()};
  UniqueFd report_read(pipe_fds[0]), report_write(pipe_fds[1]);
  UniqueFd null_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) return Unexpected{os_error("open", "/dev/null", errno)};

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return Unexpected{os_error("fork", "", errno)};
  if (pid == 0) run_child(spec, argv.data(), envp.data(), report_write.get(), null_fd.get(), parent);

  report_write.reset();
  // Bounded: after setresuid the child is the user's, who could stop it (SIGSTOP) before exec
  // and would otherwise freeze pgod here.
  pollfd ready{report_read.get(), POLLIN, 0};
  const int polled = retry_eintr([&] { return poll(&ready, 1, static_cast<int>(kExecTimeout.count())); });
  ChildError report{};
  ssize_t got = -1;
  if (polled > 0) {
    got = retry_eintr([&] { return read(report_read.get(), &report, sizeof report); });
    if (got == 0) return pid;  // the pipe closed at exec: the program runs
  } else {
    kill(pid, SIGKILL);
  }

  // The child failed before exec and is exiting: reap it here, it never became a worker.
  int status = 0;
  retry_eintr([&] { return waitpid(pid, &status, 0); });
  if (polled <= 0)
    return Unexpected{fmt::format("starting {} as {}: no exec within {} s (stopped?): killed", spec.program,
                                  spec.identity.user, kExecTimeout.count() / 1000)};
  if (got != static_cast<ssize_t>(sizeof report))
    return Unexpected{fmt::format("starting {} as {}: the child failed before exec", spec.program, spec.identity.user)};
  return Unexpected{fmt::format("starting {} as {}: {}: {}", spec.program, spec.identity.user,
                                step_name(static_cast<Step>(report.step)), errno_text(report.error))};
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
  return fmt::format("status {}", status);
}

}  // namespace pgod::supervisor
