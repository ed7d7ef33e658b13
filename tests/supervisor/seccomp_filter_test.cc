// Fork-and-assert: each call runs in a child that drops its identity where the case needs it,
// sets no_new_privs and installs the worker filter (the worker's order), then reports the call's
// outcome through a pipe. Refusals are checked by their exact errno and, when the tests run as
// root, against the same call without the filter, so that a refusal the kernel would have made
// anyway cannot pass for the filter's.
#include "seccomp_filter.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "process.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::supervisor {
namespace {

constexpr uid_t kNobody = 65534;
constexpr char kMissingPath[] = "/nonexistent-pgod-seccomp-test";

bool running_as_root() { return geteuid() == 0; }

// Who the child is when it makes the call.
enum class As {
  kCaller,  // the test's identity (root, normally: only the filter can then refuse)
  kNobody,  // 65534 with no groups, as a worker runs (when the tests run as root; else as is)
};

enum class Filter { kInstalled, kNone };

// A call's outcome as one word: "ok", or the errno's name ("EPERM"). Reads errno first.
std::string outcome(long rc) {
  const int error = errno;
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : "errno " + std::to_string(error);
}

// Built once, in the parent, as the supervisor does.
const Expected<SeccompProgram, std::string>& worker_filter() {
  static const auto built = build_worker_filter();
  return built;
}

// Empty when done, else what failed.
std::string drop_to_nobody() {
  if (!running_as_root()) return "";
  if (setgroups(0, nullptr) != 0) return "setgroups: " + outcome(-1);
  if (setresgid(kNobody, kNobody, kNobody) != 0) return "setresgid: " + outcome(-1);
  if (setresuid(kNobody, kNobody, kNobody) != 0) return "setresuid: " + outcome(-1);
  return "";
}

void write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

// The child's side: identity, no_new_privs, filter, call. Never returns, not even by an
// exception (into the child's copy of gtest): _exit only, so that no atexit handler or
// LeakSanitizer (which uses ptrace, refused by the filter) runs in the child.
[[noreturn]] void child(As who, Filter filter, const std::function<std::string()>& call, int report) {
  alarm(30);                   // a hung call fails the test instead of hanging it
  const rlimit no_core{0, 0};  // SIGSYS (and KILL_PROCESS) would dump core
  setrlimit(RLIMIT_CORE, &no_core);
  std::string failure = who == As::kNobody ? drop_to_nobody() : "";
  if (failure.empty() && filter == Filter::kInstalled) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      failure = "PR_SET_NO_NEW_PRIVS: " + outcome(-1);
    } else if (const int rc = install_seccomp_program(*worker_filter()); rc != 0) {
      errno = -rc;
      failure = "install_seccomp_program: " + outcome(-1);
    }
  }
  std::string said;
  try {
    said = failure.empty() ? call() : "set-up failed: " + failure;
  } catch (const std::exception& error) {  // must not unwind into gtest's copy of the test
    said = std::string("threw: ") + error.what();
  } catch (...) {
    said = "threw";
  }
  write_all(report, said);
  _exit(0);
}

// Runs `call` in a forked child and returns what it reported, or how it ended when not with
// status 0 ("killed by SIGSYS").
std::string run_child(As who, Filter filter, const std::function<std::string()>& call) {
  const auto& built = worker_filter();
  if (!built) return "no filter: " + built.error();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return "pipe2: " + outcome(-1);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  const pid_t pid = fork();
  if (pid < 0) return "fork: " + outcome(-1);
  if (pid == 0) child(who, filter, call, write_end.get());
  write_end.reset();
  std::string report;
  char buffer[512];
  for (;;) {
    const ssize_t n = read(read_end.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    report.append(buffer, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "exit " + std::to_string(WEXITSTATUS(status)) + (report.empty() ? "" : ": " + report);
  return report;
}

std::string confined(As who, const std::function<std::string()>& call) {
  return run_child(who, Filter::kInstalled, call);
}

// Without the filter the outcome is known only as root (an unprivileged caller is refused by
// the kernel itself); a control that must differ from the filter's answer.
void expect_without_filter(As who, const std::function<std::string()>& call, const std::string& expected) {
  if (!running_as_root()) return;
  EXPECT_EQ(run_child(who, Filter::kNone, call), expected) << "without the filter";
}

// clone(2) as fork calls it, plus `flags`; a new process exits at once.
std::string clone_with(unsigned long flags) {
  const long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  const std::string result = outcome(pid);
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return result;
}

// A field of /proc/self/status of the calling process ("Seccomp_filters" → "0"), or "".
std::string own_status_field(const std::string& name) {
  const std::string status = test::read_file("/proc/self/status");
  const auto at = status.find("\n" + name + ":\t");
  if (at == std::string::npos) return "";
  const auto start = at + name.size() + 3;
  return status.substr(start, status.find('\n', start) - start);
}

// Waits for `pid` and describes how it ended: "exit 7", "killed by SIGSYS".
std::string reap(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "waitpid: " + outcome(-1);
  if (WIFSIGNALED(status)) return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
  return "exit " + std::to_string(WEXITSTATUS(status));
}

// ---------------------------------------------------------------------------------------------
// The program

TEST(SeccompFilterTest, BuildsANonEmptyProgramThatChecksTheArchitectureFirst) {
  const auto& built = worker_filter();
  ASSERT_TRUE(built.has_value()) << built.error();
  const auto& instructions = built->instructions;
  ASSERT_FALSE(instructions.empty());
  EXPECT_LE(instructions.size(), std::size_t{BPF_MAXINSNS});
  EXPECT_EQ(instructions.front().code, BPF_LD | BPF_W | BPF_ABS) << "first loads a word of seccomp_data";
  EXPECT_EQ(instructions.front().k, offsetof(seccomp_data, arch)) << "the architecture, before any number";
  EXPECT_EQ(BPF_CLASS(instructions.back().code), BPF_RET) << "ends with a return";
}

TEST(SeccompFilterTest, BuildingTwiceGivesTheSameProgram) {
  const auto first = build_worker_filter();
  const auto second = build_worker_filter();
  ASSERT_TRUE(first.has_value()) << first.error();
  ASSERT_TRUE(second.has_value()) << second.error();
  ASSERT_EQ(first->instructions.size(), second->instructions.size());
  EXPECT_EQ(std::memcmp(first->instructions.data(), second->instructions.data(),
                        first->instructions.size() * sizeof(sock_filter)),
            0);
}

TEST(SeccompFilterTest, InstallRefusesEmptyOrOversizedProgramsAndAFilterWithoutNoNewPrivs) {
  EXPECT_EQ(install_seccomp_program(SeccompProgram{}), -EINVAL);
  SeccompProgram oversized;
  oversized.instructions.resize(BPF_MAXINSNS + 1, sock_filter{BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW});
  EXPECT_EQ(install_seccomp_program(oversized), -EINVAL);
  // Without no_new_privs an unprivileged process may not install a filter: -errno comes back.
  EXPECT_EQ(run_child(As::kNobody, Filter::kNone,
                      [] {
                        const int rc = install_seccomp_program(*worker_filter());
                        errno = -rc;
                        return outcome(rc);
                      }),
            "EACCES");
}

TEST(SeccompFilterTest, TheFilterIsInstalledOnce) {
  const std::string before = own_status_field("Seccomp_filters");
  if (before.empty()) GTEST_SKIP() << "kernel without Seccomp_filters in /proc/self/status";
  const auto call = [] { return own_status_field("Seccomp") + " " + own_status_field("Seccomp_filters"); };
  EXPECT_EQ(confined(As::kCaller, call), "2 " + std::to_string(std::stoi(before) + 1));
}

// ---------------------------------------------------------------------------------------------
// Refused: mounts and namespaces

TEST(SeccompFilterTest, MountIsRefused) {
  const auto call = [] { return outcome(mount("none", kMissingPath, "tmpfs", 0, nullptr)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ENOENT");
}

TEST(SeccompFilterTest, Umount2IsRefused) {
  const auto call = [] { return outcome(umount2(kMissingPath, 0)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ENOENT");
}

TEST(SeccompFilterTest, UnshareOfAUserNamespaceIsRefusedToAnUnprivilegedWorker) {
  const auto call = [] { return outcome(unshare(CLONE_NEWUSER)); };
  EXPECT_EQ(confined(As::kNobody, call), "EPERM");
  expect_without_filter(As::kNobody, call, "ok");  // this kernel lets unprivileged users do it
}

TEST(SeccompFilterTest, UnshareOfAMountNamespaceIsRefused) {
  const auto call = [] { return outcome(unshare(CLONE_NEWNS)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ok");
}

TEST(SeccompFilterTest, SetnsIsRefused) {
  const auto call = [] {
    const UniqueFd own_uts(open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC));
    if (!own_uts) return "open: " + outcome(-1);
    return outcome(setns(own_uts.get(), CLONE_NEWUTS));
  };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ok");
}

TEST(SeccompFilterTest, CloneWithCloneNewUserIsRefusedToAnUnprivilegedWorker) {
  const auto call = [] { return clone_with(CLONE_NEWUSER); };
  EXPECT_EQ(confined(As::kNobody, call), "EPERM");
  expect_without_filter(As::kNobody, call, "ok");
}

TEST(SeccompFilterTest, CloneWithAnyNamespaceFlagIsRefused) {
  std::vector<std::pair<const char*, unsigned long>> flags = {
      {"CLONE_NEWNS", CLONE_NEWNS},   {"CLONE_NEWCGROUP", CLONE_NEWCGROUP}, {"CLONE_NEWUTS", CLONE_NEWUTS},
      {"CLONE_NEWIPC", CLONE_NEWIPC}, {"CLONE_NEWUSER", CLONE_NEWUSER},     {"CLONE_NEWPID", CLONE_NEWPID},
      {"CLONE_NEWNET", CLONE_NEWNET},
  };
#ifdef CLONE_NEWTIME
  flags.emplace_back("CLONE_NEWTIME", CLONE_NEWTIME);
#endif
  for (const auto& [name, flag] : flags) {
    EXPECT_EQ(confined(As::kCaller, [flag = flag] { return clone_with(flag); }), "EPERM") << name;
    // Among other flags, and with the flag's bits among others': the rule masks, it does not compare.
    EXPECT_EQ(confined(As::kCaller, [flag = flag] { return clone_with(flag | CLONE_FILES | CLONE_FS); }), "EPERM")
        << name << " with CLONE_FILES|CLONE_FS";
  }
}

TEST(SeccompFilterTest, Clone3FailsWithEnosysSoThatCallersFallBackToClone) {
  const auto call = [] {
    struct {
      std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args{};  // struct clone_args, version 0 (64 bytes)
    args.exit_signal = SIGCHLD;
    const long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) _exit(0);
    const std::string result = outcome(pid);
    if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return result;
  };
  EXPECT_EQ(confined(As::kCaller, call), "ENOSYS");
  expect_without_filter(As::kCaller, call, "ok");
}

// ---------------------------------------------------------------------------------------------
// Refused: identity, tracing, kernel interfaces

TEST(SeccompFilterTest, SetuidToRootAfterTheDropIsRefused) {
  // The kernel refuses this too; what matters is that the worker's way back stays shut.
  EXPECT_EQ(confined(As::kNobody, [] { return outcome(syscall(SYS_setuid, 0)); }), "EPERM");
}

TEST(SeccompFilterTest, IdentityChangesAreRefusedEvenToTheCurrentValues) {
  // Changes the kernel would allow (to the values the process already has): only the filter refuses.
  const std::pair<const char*, std::function<long()>> calls[] = {
      {"setuid", [] { return syscall(SYS_setuid, getuid()); }},
      {"setgid", [] { return syscall(SYS_setgid, getgid()); }},
      {"setresuid", [] { return syscall(SYS_setresuid, -1, -1, -1); }},
      {"setresgid", [] { return syscall(SYS_setresgid, -1, -1, -1); }},
      {"setreuid", [] { return syscall(SYS_setreuid, -1, -1); }},
      {"setfsuid", [] { return syscall(SYS_setfsuid, getuid()); }},  // else returns the old fsuid
      {"setfsgid", [] { return syscall(SYS_setfsgid, getgid()); }},
      {"capset",
       [] {
         __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
         __user_cap_data_struct data[2]{};
         if (syscall(SYS_capget, &header, data) != 0) return -1L;
         return syscall(SYS_capset, &header, data);
       }},
  };
  for (const auto& [name, call] : calls) {
    const auto run = [&call = call] { return outcome(call()); };
    EXPECT_EQ(confined(As::kNobody, run), "EPERM") << name;
    expect_without_filter(As::kNobody, run, "ok");
  }
}

TEST(SeccompFilterTest, SetgroupsIsRefused) {
  const auto call = [] { return outcome(setgroups(0, nullptr)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ok");
}

TEST(SeccompFilterTest, PtraceTracemeIsRefused) {
  const auto call = [] { return outcome(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ok");
}

TEST(SeccompFilterTest, BpfIsRefused) {
  // An unknown command: EINVAL from the kernel (as root), EPERM only from the filter.
  const auto call = [] { return outcome(syscall(SYS_bpf, 0x7fff, nullptr, 0)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "EINVAL");
}

TEST(SeccompFilterTest, IoUringSetupIsRefused) {
  // No ring (params NULL): EFAULT from the kernel, EPERM only from the filter. io_uring does
  // its I/O outside the syscall path, so a filter could not see what a ring does.
  const auto call = [] { return outcome(syscall(SYS_io_uring_setup, 1, nullptr)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  std::string disabled;  // kernels since 6.6 may disable io_uring for everyone (EPERM too)
  std::ifstream("/proc/sys/kernel/io_uring_disabled") >> disabled;
  if (disabled.empty() || disabled == "0") expect_without_filter(As::kCaller, call, "EFAULT");
}

TEST(SeccompFilterTest, KeyctlIsRefused) {
  // The thread keyring, created on demand, dies with the child.
  const auto call = [] { return outcome(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, 1)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ok");
}

TEST(SeccompFilterTest, AddKeyIsRefused) {
  // A key type that does not exist: ENODEV from the kernel, nothing is created either way.
  const auto call = [] {
    return outcome(syscall(SYS_add_key, "pgod-no-such-type", "pgod-test", "x", 1, KEY_SPEC_THREAD_KEYRING));
  };
  EXPECT_EQ(confined(As::kCaller, call), "EPERM");
  expect_without_filter(As::kCaller, call, "ENODEV");
}

TEST(SeccompFilterTest, TerminalInjectionIoctlsAreRefusedWhateverTheHighBits) {
  const std::pair<const char*, unsigned long> requests[] = {
      {"TIOCSTI", TIOCSTI},
      {"TIOCLINUX", TIOCLINUX},
      {"TIOCSTI with bit 32 set (the kernel reads an unsigned int)", (1UL << 32) | TIOCSTI},
  };
  for (const auto& [name, request] : requests) {
    const auto call = [request = request] {
      const UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
      char c = 'x';
      return outcome(syscall(SYS_ioctl, null.get(), request, &c));
    };
    EXPECT_EQ(confined(As::kCaller, call), "EPERM") << name;
    expect_without_filter(As::kCaller, call, "ENOTTY");
  }
  // Other ioctls pass.
  const auto fionbio = [] {
    const UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
    int on = 1;
    return outcome(ioctl(null.get(), FIONBIO, &on));
  };
  EXPECT_EQ(confined(As::kCaller, fionbio), "ok");
}

// ---------------------------------------------------------------------------------------------
// Sockets

TEST(SeccompFilterTest, PacketSocketsAreRefusedWithEafnosupport) {
  const auto call = [] { return outcome(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)); };
  EXPECT_EQ(confined(As::kCaller, call), "EAFNOSUPPORT");
  expect_without_filter(As::kCaller, call, "ok");
}

TEST(SeccompFilterTest, EveryOtherFamilyIsRefusedWithEafnosupport) {
  const std::pair<const char*, long> families[] = {
      {"AF_UNSPEC", AF_UNSPEC},
      {"AF_AX25 (below AF_INET6)", AF_AX25},
      {"AF_KEY (below AF_NETLINK)", AF_KEY},
      {"AF_VSOCK", AF_VSOCK},
      {"AF_ALG", AF_ALG},
      {"AF_MAX", AF_MAX},
      {"-1", -1},
      {"AF_UNIX with bit 32 set", (1L << 32) | AF_UNIX},
  };
  for (const auto& [name, family] : families) {
    const auto call = [family = family] { return outcome(syscall(SYS_socket, family, SOCK_STREAM, 0)); };
    EXPECT_EQ(confined(As::kCaller, call), "EAFNOSUPPORT") << name;
  }
}

TEST(SeccompFilterTest, NetlinkOtherThanRouteIsRefusedWithEprotonosupport) {
  const auto call = [] { return outcome(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT)); };
  EXPECT_EQ(confined(As::kCaller, call), "EPROTONOSUPPORT");
  expect_without_filter(As::kCaller, call, "ok");
}

TEST(SeccompFilterTest, UnixInetInet6AndNetlinkRouteSocketsStillWork) {
  const std::tuple<const char*, int, int, int> sockets[] = {
      {"AF_UNIX", AF_UNIX, SOCK_STREAM, 0},
      {"AF_INET", AF_INET, SOCK_STREAM, 0},
      {"AF_INET6", AF_INET6, SOCK_DGRAM, 0},
      {"AF_NETLINK/NETLINK_ROUTE", AF_NETLINK, SOCK_RAW, NETLINK_ROUTE},
  };
  for (const auto& [name, family, type, protocol] : sockets) {
    const auto call = [family = family, type = type, protocol = protocol] {
      return outcome(socket(family, type | SOCK_CLOEXEC, protocol));
    };
    EXPECT_EQ(confined(As::kNobody, call), "ok") << name;
  }
  EXPECT_EQ(confined(As::kNobody,
                     [] {
                       int pair[2];
                       return outcome(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
                     }),
            "ok");
}

// ---------------------------------------------------------------------------------------------
// What docker, docker-compose and git need still works

TEST(SeccompFilterTest, ForkAndExecWorkAndTheFilterPersistsIntoGrandchildren) {
  const std::string filters = own_status_field("Seccomp_filters");
  const auto call = [] {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return "pipe2: " + outcome(-1);
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    const pid_t pid = fork();
    if (pid < 0) return "fork: " + outcome(-1);
    if (pid == 0) {
      dup2(write_end.get(), STDOUT_FILENO);
      // Builtins only: the lines are the shell's own status, the grandchild's.
      const char* argv[] = {"sh", "-c",
                            "while read -r key value; do case $key in Seccomp:|Seccomp_filters:) "
                            "echo \"$key $value\";; esac; done < /proc/self/status; exit 7",
                            nullptr};
      execve("/bin/sh", const_cast<char**>(argv), environ);
      _exit(127);
    }
    write_end.reset();
    std::string output;
    char buffer[256];
    ssize_t n;
    while ((n = read(read_end.get(), buffer, sizeof buffer)) > 0) output.append(buffer, static_cast<std::size_t>(n));
    return output + reap(pid);
  };
  const std::string filter_line =
      filters.empty() ? "" : "Seccomp_filters: " + std::to_string(std::stoi(filters) + 1) + "\n";
  EXPECT_EQ(confined(As::kNobody, call), "Seccomp: 2\n" + filter_line + "exit 7");
}

TEST(SeccompFilterTest, PosixSpawnWorks) {
  // glibc's posix_spawn tries clone3(CLONE_VM|CLONE_VFORK) first and must fall back to clone.
  const auto call = [] {
    const char* argv[] = {"sh", "-c", "exit 7", nullptr};
    pid_t pid = 0;
    if (const int rc = posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ); rc != 0) {
      errno = rc;
      return "posix_spawn: " + outcome(-1);
    }
    return reap(pid);
  };
  EXPECT_EQ(confined(As::kNobody, call), "exit 7");
}

TEST(SeccompFilterTest, ThreadsWork) {
  // glibc 2.36's pthread_create tries clone3 first: refused with EPERM, it would fail outright.
  const auto call = [] {
    static int ran = 0;
    const auto run = [](void*) -> void* {
      ran = 1;
      return nullptr;
    };
    pthread_t thread;
    const int rc = pthread_create(&thread, nullptr, run, nullptr);
    if (rc != 0) {
      errno = rc;
      return "pthread_create: " + outcome(-1);
    }
    pthread_join(thread, nullptr);
    int sum = 0;
    try {
      std::thread worker([&sum] { sum = 41; });
      worker.join();
    } catch (const std::exception& error) {
      return std::string("std::thread: ") + error.what();
    }
    return "ran " + std::to_string(ran + sum);
  };
  EXPECT_EQ(confined(As::kNobody, call), "ran 42");
}

TEST(SeccompFilterTest, ForkWorks) {
  const auto call = [] {
    const pid_t pid = fork();
    if (pid == 0) _exit(3);
    if (pid < 0) return "fork: " + outcome(-1);
    return reap(pid);
  };
  EXPECT_EQ(confined(As::kNobody, call), "exit 3");
}

// ---------------------------------------------------------------------------------------------
// Other architectures

#if defined(__x86_64__)
constexpr long kX32SyscallBit = 0x40000000;

TEST(SeccompFilterTest, AnX32SyscallKillsTheWholeProcessNotJustTheThread) {
  // From a second thread: were the bad-arch action KILL_THREAD, the main thread would go on.
  const auto call = [] {
    std::thread([] { syscall(kX32SyscallBit | SYS_getpid); }).join();
    return std::string("survived");
  };
  EXPECT_EQ(confined(As::kCaller, call), "killed by SIGSYS");
}

long int80_getpid() {
  long result = 20;  // getpid in the i386 table
  asm volatile("int $0x80" : "+a"(result) : : "memory", "r8", "r9", "r10", "r11");
  return result;
}

TEST(SeccompFilterTest, AnI386SyscallKillsTheProcess) {
  const auto call = [] { return int80_getpid() > 0 ? std::string("ok") : std::string("failed"); };
  const std::string unfiltered = run_child(As::kCaller, Filter::kNone, call);
  if (unfiltered != "ok") GTEST_SKIP() << "no i386 emulation in this kernel: " << unfiltered;
  EXPECT_EQ(confined(As::kCaller, call), "killed by SIGSYS");
}
#endif

}  // namespace
}  // namespace pgod::supervisor
