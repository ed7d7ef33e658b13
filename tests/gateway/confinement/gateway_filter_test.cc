// Fork-and-assert for the gateway's seccomp allowlist: each call runs in a child that installs
// the real filter (install_gateway_filter) and then makes it. Forbidden calls kill the child
// with SIGSYS, file opens fail with EACCES; what the gateway needs (unix sockets, threads,
// epoll, a KJ event loop set up before the filter) still works. Where a refusal could be the
// kernel's own, the same call runs unfiltered as a control.
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/exception.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "confined_child.h"
#include "confinement.h"
#include "fd_passing.h"
#include "process.h"
#include "unique_fd.h"

namespace pgod::gateway::test {
namespace {

constexpr char kKilled[] = "killed by SIGSYS";

// ---------------------------------------------------------------------------------------------
// Forbidden: new processes and programs

TEST(GatewayFilterTest, ExecveKills) {
  const auto call = [] {
    char path[] = "/bin/false";
    char* const argv[] = {path, nullptr};
    char* const envp[] = {nullptr};
    return outcome(execve(path, argv, envp));
  };
  EXPECT_EQ(confined(call), kKilled);
  EXPECT_EQ(unconfined(call), "exit 1") << "control: /bin/false replaced the child";
}

TEST(GatewayFilterTest, ExecveatKills) {
  EXPECT_EQ(confined([] {
              char* const argv[] = {nullptr};
              return outcome(syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, argv, 0));
            }),
            kKilled);
}

TEST(GatewayFilterTest, ForkKills) {
  const auto call = [] {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, nullptr, 0);
    return outcome(pid);
  };
  EXPECT_EQ(confined(call), kKilled);
  EXPECT_EQ(unconfined(call), "ok");
}

TEST(GatewayFilterTest, VforkKills) {
  // The raw syscall: glibc's vfork() could use clone, which the fork case covers.
  EXPECT_EQ(confined([] {
              const long pid = syscall(SYS_vfork);
              if (pid == 0) _exit(0);  // never reached under the filter
              return outcome(pid);
            }),
            kKilled);
}

TEST(GatewayFilterTest, CloneWithoutCloneThreadKills) {
  EXPECT_EQ(confined([] {
              const long pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
              if (pid == 0) _exit(0);
              return outcome(pid);
            }),
            kKilled);
}

TEST(GatewayFilterTest, CloneOfAThreadInANewNamespaceKills) {
  // The filter decides before the kernel looks at the (here useless) stack: no thread starts.
  for (const unsigned long flag : {CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID}) {
    EXPECT_EQ(confined([flag] {
                const long rc = syscall(SYS_clone, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD | flag, 0, 0, 0, 0);
                return outcome(rc);
              }),
              kKilled)
        << std::hex << flag;
  }
}

TEST(GatewayFilterTest, Clone3FailsWithEnosysSoThatGlibcFallsBackToClone) {
  EXPECT_EQ(confined([] {
              struct {
                std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
              } args{};  // struct clone_args, version 0
              args.exit_signal = SIGCHLD;
              const long pid = syscall(SYS_clone3, &args, sizeof args);
              if (pid == 0) _exit(0);
              return outcome(pid);
            }),
            "ENOSYS");
}

// ---------------------------------------------------------------------------------------------
// Forbidden: network sockets other than unix

TEST(GatewayFilterTest, InternetNetlinkAndPacketSocketsKill) {
  const std::pair<const char*, std::vector<int>> sockets[] = {
      {"AF_INET", {AF_INET, SOCK_STREAM, 0}},   {"AF_INET udp", {AF_INET, SOCK_DGRAM, 0}},
      {"AF_INET6", {AF_INET6, SOCK_STREAM, 0}}, {"AF_NETLINK", {AF_NETLINK, SOCK_RAW, NETLINK_ROUTE}},
      {"AF_PACKET", {AF_PACKET, SOCK_RAW, 0}},  {"AF_VSOCK", {AF_VSOCK, SOCK_STREAM, 0}},
  };
  for (const auto& [name, args] : sockets) {
    const auto call = [&args = args] { return outcome(socket(args[0], args[1] | SOCK_CLOEXEC, args[2])); };
    EXPECT_EQ(confined(call), kKilled) << name;
  }
  EXPECT_EQ(unconfined([] { return outcome(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)); }), "ok") << "control";
}

TEST(GatewayFilterTest, AUnixFamilyWithHighBitsSetKills) {
  // The kernel reads an int: 1<<32 | AF_UNIX would be AF_UNIX to it. The filter fails closed.
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_socket, (1L << 32) | AF_UNIX, SOCK_STREAM, 0)); }), kKilled);
}

TEST(GatewayFilterTest, SocketpairOtherThanUnixKills) {
  EXPECT_EQ(confined([] {
              int pair[2];
              return outcome(socketpair(AF_INET, SOCK_STREAM, 0, pair));
            }),
            kKilled);
}

TEST(GatewayFilterTest, BindAndListenKill) {
  // The listeners are open before the filter; nothing binds or listens afterwards.
  EXPECT_EQ(confined([] {
              const UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
              if (!fd) return "socket: " + outcome(-1);
              sockaddr_un address{};
              address.sun_family = AF_UNIX;  // autobind to an abstract name
              return outcome(bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(sa_family_t)));
            }),
            kKilled);
  EXPECT_EQ(confined([] {
              const UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
              if (!fd) return "socket: " + outcome(-1);
              return outcome(listen(fd.get(), 1));
            }),
            kKilled);
}

// ---------------------------------------------------------------------------------------------
// Forbidden: executable memory

TEST(GatewayFilterTest, AnExecutableMappingKills) {
  for (const int prot : {PROT_READ | PROT_EXEC, PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC}) {
    const auto call = [prot] {
      void* page = mmap(nullptr, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      return outcome(page == MAP_FAILED ? -1 : 0);
    };
    EXPECT_EQ(confined(call), kKilled) << "prot " << prot;
    EXPECT_EQ(unconfined(call), "ok") << "control, prot " << prot;
  }
}

TEST(GatewayFilterTest, MakingMemoryExecutableKills) {
  const auto call = [] {
    void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return "mmap: " + outcome(-1);
    return outcome(mprotect(page, 4096, PROT_READ | PROT_EXEC));
  };
  EXPECT_EQ(confined(call), kKilled);
  EXPECT_EQ(unconfined(call), "ok");
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_pkey_mprotect, nullptr, 0, PROT_READ, -1)); }), kKilled)
      << "pkey_mprotect";
}

TEST(GatewayFilterTest, MemfdCreateKills) {
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_memfd_create, "x", 0)); }), kKilled);
}

// ---------------------------------------------------------------------------------------------
// Files: opening fails (libraries may probe), without killing

TEST(GatewayFilterTest, OpenatFailsWithEacces) {
  const auto call = [] { return outcome(openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC)); };
  EXPECT_EQ(confined(call), "EACCES");
  EXPECT_EQ(unconfined(call), "ok");
  EXPECT_EQ(confined([] { return outcome(openat(AT_FDCWD, "/tmp/pgod-filter-test", O_WRONLY | O_CREAT, 0600)); }),
            "EACCES")
      << "creating";
}

TEST(GatewayFilterTest, OpenFailsWithEacces) {
  // The raw syscall: glibc's open() is openat.
  const auto call = [] { return outcome(syscall(SYS_open, "/etc/passwd", O_RDONLY | O_CLOEXEC)); };
  EXPECT_EQ(confined(call), "EACCES");
  EXPECT_EQ(unconfined(call), "ok");
  EXPECT_EQ(confined([] {
              FILE* file = std::fopen("/etc/passwd", "re");
              if (file != nullptr) std::fclose(file);
              return outcome(file != nullptr ? 0 : -1);
            }),
            "EACCES")
      << "fopen";
}

TEST(GatewayFilterTest, StatOfAPathFailsWithEaccesButFstatWorks) {
  EXPECT_EQ(confined([] {
              struct stat info {};
              return outcome(stat("/etc/passwd", &info));
            }),
            "EACCES");
  EXPECT_EQ(confined([] {
              struct stat info {};
              if (fstat(STDERR_FILENO, &info) != 0) return "fstat: " + outcome(-1);
              if (syscall(SYS_fstat, STDERR_FILENO, &info) != 0) return "raw fstat: " + outcome(-1);
              return std::string("ok");
            }),
            "ok");
}

TEST(GatewayFilterTest, ReadlinkFailsWithEacces) {
  // The sanitizers' reports read /proc/self/exe; like any file probe, it just fails.
  const auto call = [] {
    char target[256];
    return outcome(readlink("/proc/self/exe", target, sizeof target));
  };
  EXPECT_EQ(confined(call), "EACCES");
  EXPECT_EQ(unconfined(call), "ok");
  EXPECT_EQ(confined([] {
              char target[256];
              return outcome(readlinkat(AT_FDCWD, "/proc/self/exe", target, sizeof target));
            }),
            "EACCES")
      << "readlinkat";
}

TEST(GatewayFilterTest, LocaltimeAndStdioStillWork) {
  // glibc's localtime() re-stats /etc/localtime on every call; stdio fstats a stream on its
  // first use. Both must survive (falling back to UTC is fine).
  EXPECT_EQ(confined([] {
              const std::time_t now = std::time(nullptr);
              if (std::localtime(&now) == nullptr || std::localtime(&now) == nullptr) return std::string("localtime");
              std::tm parts{};
              if (localtime_r(&now, &parts) == nullptr) return std::string("localtime_r");
              if (std::fprintf(stderr, "%s", "") < 0 || std::fflush(stderr) != 0) return std::string("stderr");
              return std::string("ok");
            }),
            "ok");
}

// ---------------------------------------------------------------------------------------------
// Forbidden: identity, tracing, other processes, the filter itself

TEST(GatewayFilterTest, SetuidKills) {
  EXPECT_EQ(confined([] { return outcome(setuid(0)); }), kKilled);
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_setresuid, -1, -1, -1)); }), kKilled) << "setresuid";
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_setgroups, 0, nullptr)); }), kKilled) << "setgroups";
}

TEST(GatewayFilterTest, PtraceKills) {
  const auto call = [] { return outcome(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)); };
  EXPECT_EQ(confined(call), kKilled);
  EXPECT_EQ(unconfined(call), "ok");
}

TEST(GatewayFilterTest, SignallingAnotherProcessKills) {
  EXPECT_EQ(confined([] { return outcome(kill(getppid(), 0)); }), kKilled) << "kill";
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_tgkill, getppid(), getppid(), 0)); }), kKilled) << "tgkill";
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_tkill, getppid(), 0)); }), kKilled) << "tkill";
}

TEST(GatewayFilterTest, RaisingASignalInItselfWorks) {
  EXPECT_EQ(confined([] {
              static volatile sig_atomic_t caught = 0;
              struct sigaction action {};
              action.sa_handler = [](int) { caught = 1; };
              if (sigemptyset(&action.sa_mask) != 0 || sigaction(SIGUSR1, &action, nullptr) != 0)
                return "sigaction: " + outcome(-1);
              if (raise(SIGUSR1) != 0) return "raise: " + outcome(-1);
              return std::string(caught == 1 ? "caught" : "not caught");
            }),
            "caught");
}

TEST(GatewayFilterTest, PrctlOtherThanThreadNamesKills) {
  EXPECT_EQ(confined([] { return outcome(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)); }), kKilled);
  EXPECT_EQ(confined([] { return outcome(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)); }), kKilled);
  EXPECT_EQ(confined([] {
              char name[16] = {};
              if (prctl(PR_SET_NAME, "pgod-test", 0, 0, 0) != 0) return "PR_SET_NAME: " + outcome(-1);
              if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) return "PR_GET_NAME: " + outcome(-1);
              return std::string(name);
            }),
            "pgod-test");
}

TEST(GatewayFilterTest, AnotherFilterCannotBeInstalled) {
  // seccomp(2) also makes user-notification listeners; the filter in place is final.
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, nullptr)); }), kKilled);
  EXPECT_EQ(confined([] { return install_filter(); }), kKilled) << "a second install_gateway_filter";
}

TEST(GatewayFilterTest, IoctlOtherThanNonBlockingCloseOnExecAndIsattyKills) {
  const auto fionread = [] {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return "pipe2: " + outcome(-1);
    int pending = 0;
    return outcome(ioctl(fds[0], FIONREAD, &pending));
  };
  EXPECT_EQ(confined(fionread), kKilled) << "FIONREAD";
  EXPECT_EQ(unconfined(fionread), "ok") << "FIONREAD, control";
  EXPECT_EQ(confined([] {
              char c = 'x';
              return outcome(ioctl(STDIN_FILENO, TIOCSTI, &c));
            }),
            kKilled)
      << "TIOCSTI";
  // isatty (TCGETS) answers "not a terminal", even for a terminal.
  const auto isatty_of_a_terminal = [](bool filtered) {
    return run_child([filtered] {
      const UniqueFd terminal(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
      if (!terminal) return "posix_openpt: " + outcome(-1);
      if (filtered) {
        if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
      }
      return outcome(isatty(terminal.get()) ? 0 : -1);
    });
  };
  EXPECT_EQ(isatty_of_a_terminal(true), "ENOTTY");
  EXPECT_EQ(isatty_of_a_terminal(false), "ok") << "control";
  EXPECT_EQ(confined([] {
              int fds[2];
              if (pipe2(fds, 0) != 0) return "pipe2: " + outcome(-1);
              int on = 1;
              if (ioctl(fds[0], FIONBIO, &on) != 0) return "FIONBIO: " + outcome(-1);
              if (ioctl(fds[0], FIOCLEX) != 0) return "FIOCLEX: " + outcome(-1);
              const int flags = fcntl(fds[0], F_GETFL);
              const int fd_flags = fcntl(fds[0], F_GETFD);
              return std::string((flags & O_NONBLOCK) && (fd_flags & FD_CLOEXEC) ? "ok" : "flags not set");
            }),
            "ok");
}

TEST(GatewayFilterTest, ChangingResourceLimitsKillsButReadingThemWorks) {
  EXPECT_EQ(confined([] {
              rlimit limit{};
              if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return "getrlimit: " + outcome(-1);
              return std::string("ok");
            }),
            "ok");
  EXPECT_EQ(confined([] {
              rlimit limit{};
              if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return "getrlimit: " + outcome(-1);
              return outcome(setrlimit(RLIMIT_NOFILE, &limit));
            }),
            kKilled);
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_prlimit64, getppid(), RLIMIT_NOFILE, nullptr, nullptr)); }),
            kKilled)
      << "another process's limits";
}

// ---------------------------------------------------------------------------------------------
// Other architectures

#if defined(__x86_64__)
TEST(GatewayFilterTest, AnX32SyscallKillsTheWholeProcess) {
  constexpr long kX32SyscallBit = 0x40000000;
  EXPECT_EQ(confined([] {
              std::thread([] { syscall(kX32SyscallBit | SYS_getpid); }).join();
              return std::string("survived");
            }),
            kKilled);
}

long int80_getpid() {
  long result = 20;  // getpid in the i386 table
  asm volatile("int $0x80" : "+a"(result) : : "memory", "r8", "r9", "r10", "r11");
  return result;
}

TEST(GatewayFilterTest, AnI386SyscallKillsTheProcess) {
  const auto call = [] { return int80_getpid() > 0 ? std::string("ok") : std::string("failed"); };
  const std::string unfiltered = unconfined(call);
  if (unfiltered != "ok") GTEST_SKIP() << "no i386 emulation in this kernel: " << unfiltered;
  EXPECT_EQ(confined(call), kKilled);
}
#endif

#if defined(__SANITIZE_ADDRESS__)
TEST(GatewayFilterTest, ASanitizerReportIsNotCutShortBySigsys) {
  // In sanitizer builds: an error found while confined is reported and exits 1 (or aborts),
  // instead of the report dying half-written of SIGSYS on its isatty or /proc/self/exe probes.
  const std::string ended = run_child([] {
    const UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (!null || dup2(null.get(), STDERR_FILENO) < 0) return "/dev/null: " + outcome(-1);
    if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
    auto* block = static_cast<volatile char*>(std::malloc(8));
    block[8] = 1;  // one past the end
    std::free(const_cast<char*>(block));
    return std::string("not detected");
  });
  // abort_on_error=1 (as tests/run.sh sets it) ends the report with abort(): SIGABRT.
  EXPECT_TRUE(ended == "exit 1" || ended == "killed by SIGABRT") << ended;
}
#endif

// ---------------------------------------------------------------------------------------------
// Threads: allowed, and covered by the filter whenever they were made

TEST(GatewayFilterTest, ThreadsCanBeCreatedAndJoined) {
  EXPECT_EQ(confined([] {
              static int ran = 0;
              pthread_t thread;
              const int rc = pthread_create(
                  &thread, nullptr,
                  [](void*) -> void* {
                    ran = 1;
                    return nullptr;
                  },
                  nullptr);
              if (rc != 0) {
                errno = rc;
                return "pthread_create: " + outcome(-1);
              }
              if (const int joined = pthread_join(thread, nullptr); joined != 0) {
                errno = joined;
                return "pthread_join: " + outcome(-1);
              }
              // Many threads allocating at once: past 8 arenas glibc's malloc counts the CPUs,
              // from /sys (refused with EACCES), then with sched_getaffinity.
              constexpr int kThreads = 16;
              pthread_barrier_t together;
              if (const int rc = pthread_barrier_init(&together, nullptr, kThreads); rc != 0) {
                errno = rc;
                return "pthread_barrier_init: " + outcome(-1);
              }
              std::atomic<std::size_t> allocated = 0;
              std::vector<std::thread> workers;
              for (int i = 0; i < kThreads; ++i) {
                workers.emplace_back([&] {
                  pthread_barrier_wait(&together);
                  std::vector<char> block(1 << 16, 'x');
                  pthread_barrier_wait(&together);  // every thread holds its block (and arena) here
                  allocated += block.size();
                });
              }
              for (auto& worker : workers) worker.join();
              pthread_barrier_destroy(&together);
              return "ran " + std::to_string(ran) + ", allocated " + std::to_string(allocated.load());
            }),
            "ran 1, allocated " + std::to_string(16 << 16));
}

TEST(GatewayFilterTest, AThreadCreatedAfterTheFilterIsCovered) {
  EXPECT_EQ(confined([] {
              std::thread([] {
                char path[] = "/bin/true";
                char* const argv[] = {path, nullptr};
                execve(path, argv, argv + 1);
              }).join();
              return std::string("survived");
            }),
            kKilled);
}

// A thread started before the filter, told through a pipe to make `call` afterwards.
std::string from_a_thread_started_before_the_filter(void (*call)()) {
  return run_child([call] {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return "pipe2: " + outcome(-1);
    UniqueFd go_read(fds[0]), go_write(fds[1]);
    std::thread early([call, fd = go_read.get()] {
      char byte = 0;
      while (read(fd, &byte, 1) < 0 && errno == EINTR) {
      }
      call();
    });
    const std::string failure = install_filter();  // with TSYNC: also on `early`
    const char byte = 'x';
    const bool told = write(go_write.get(), &byte, 1) == 1;
    early.join();
    if (!failure.empty()) return "install_gateway_filter: " + failure;
    return std::string(told ? "survived" : "write: " + outcome(-1));
  });
}

TEST(GatewayFilterTest, AThreadThatExistedBeforeTheFilterIsCoveredToo) {
  EXPECT_EQ(from_a_thread_started_before_the_filter([] {
              char path[] = "/bin/true";
              char* const argv[] = {path, nullptr};
              execve(path, argv, argv + 1);
            }),
            kKilled)
      << "execve";
  EXPECT_EQ(from_a_thread_started_before_the_filter([] { socket(AF_INET, SOCK_STREAM, 0); }), kKilled)
      << "socket(AF_INET)";
  EXPECT_EQ(from_a_thread_started_before_the_filter([] {
              char buffer[8];
              if (getrandom(buffer, sizeof buffer, 0) != sizeof buffer) std::abort();
            }),
            "survived")
      << "an allowed call";
}

// ---------------------------------------------------------------------------------------------
// Allowed: what the gateway does while serving

// A listening unix socket in the parent, at a path in a fresh directory.
struct UnixListener {
  pgod::test::TempDir dir;
  std::string path = dir.path() + "/listener.sock";
  UniqueFd fd{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};

  UnixListener() {
    sockaddr_un address = unix_address(path);
    if (!fd || bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || listen(fd.get(), 4) != 0)
      ADD_FAILURE() << "unix listener at " << path << ": " << outcome(-1);
  }

  static sockaddr_un unix_address(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    return address;
  }

  // What the first queued connection sent (the child has written, closed and exited by now).
  std::string first_message() const {
    const UniqueFd connection(accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!connection) return "accept4: " + outcome(-1);
    char buffer[64];
    const ssize_t n = read(connection.get(), buffer, sizeof buffer);
    return n < 0 ? "read: " + outcome(-1) : std::string(buffer, static_cast<std::size_t>(n));
  }
};

TEST(GatewayFilterTest, AUnixSocketConnectsToAListener) {
  UnixListener listener;
  const std::string path = listener.path;
  EXPECT_EQ(confined([&path] {
              const UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
              if (!fd) return "socket: " + outcome(-1);
              sockaddr_un address = UnixListener::unix_address(path);
              if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
                return "connect: " + outcome(-1);
              ucred peer{};
              socklen_t size = sizeof peer;
              if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) return "getsockopt: " + outcome(-1);
              if (send(fd.get(), "hello", 5, MSG_NOSIGNAL) != 5) return "send: " + outcome(-1);
              return std::string("ok");
            }),
            "ok");
  EXPECT_EQ(listener.first_message(), "hello");
}

TEST(GatewayFilterTest, AUnixSocketpairWorks) {
  EXPECT_EQ(confined([] {
              int pair[2];
              if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return "socketpair: " + outcome(-1);
              UniqueFd a(pair[0]), b(pair[1]);
              if (write(a.get(), "ping", 4) != 4) return "write: " + outcome(-1);
              char buffer[8];
              const ssize_t n = read(b.get(), buffer, sizeof buffer);
              if (n < 0) return "read: " + outcome(-1);
              if (shutdown(a.get(), SHUT_RDWR) != 0) return "shutdown: " + outcome(-1);
              return std::string(buffer, static_cast<std::size_t>(n));
            }),
            "ping");
}

// No descriptor leaves the gateway: sendmsg is the only call that carries one, and it fails.
// A gateway taken over cannot hand pgod or a worker one whose last close would hold up their
// loops; Debian's own kernels have no SO_PASSRIGHTS for the receivers to refuse it with.
TEST(GatewayFilterTest, SendmsgFailsSoNoDescriptorCanBeSent) {
  const auto call = [] {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return "socketpair: " + outcome(-1);
    const UniqueFd a(pair[0]), b(pair[1]);
    const int descriptor = a.get();
    const auto sent = send_byte_with_fds(a.get(), 'x', &descriptor, 1);
    char received = 0;
    const bool arrived = recv(b.get(), &received, 1, MSG_DONTWAIT) == 1;
    return (sent ? std::string("sent") : sent.error()) + (arrived ? ", and it arrived" : "");
  };
  EXPECT_EQ(confined(call), "sendmsg(SCM_RIGHTS) the descriptor hand-over: Operation not permitted");
  EXPECT_EQ(unconfined(call), "sent, and it arrived") << "the control: the kernel itself lets it through";
}

TEST(GatewayFilterTest, SendmmsgKills) {
  EXPECT_EQ(confined([] { return outcome(syscall(SYS_sendmmsg, -1, nullptr, 0, 0)); }), kKilled);
}

// The audit trail's way to the journal: sendto on a datagram socket.
TEST(GatewayFilterTest, ADatagramCanBeSentWithSendto) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair), 0);
  const UniqueFd reader(pair[0]), writer(pair[1]);
  EXPECT_EQ(confined([&writer] {
              return outcome(sendto(writer.get(), "MESSAGE=x\n", 10, MSG_NOSIGNAL, nullptr, 0) == 10 ? 0 : -1);
            }),
            "ok");
  char buffer[16] = {};
  EXPECT_EQ(recv(reader.get(), buffer, sizeof buffer, MSG_DONTWAIT), 10);
}

TEST(GatewayFilterTest, RandomnessUnameAndClocksWork) {
  EXPECT_EQ(confined([] {
              unsigned char bytes[32];
              if (getrandom(bytes, sizeof bytes, 0) != sizeof bytes) return "getrandom: " + outcome(-1);
              utsname name{};
              if (uname(&name) != 0) return "uname: " + outcome(-1);
              timespec now{};
              if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) return "clock_gettime: " + outcome(-1);
              // The real syscall, as on clock sources without a vDSO path.
              if (syscall(SYS_clock_gettime, CLOCK_REALTIME, &now) != 0) return "SYS_clock_gettime: " + outcome(-1);
              const timespec pause{0, 1000000};
              if (nanosleep(&pause, nullptr) != 0) return "nanosleep: " + outcome(-1);
              if (getpid() <= 0 || getuid() != geteuid()) return std::string("ids");
              return std::string("ok");
            }),
            "ok");
}

TEST(GatewayFilterTest, EpollEventfdAndPipesWork) {
  EXPECT_EQ(confined([] {
              const UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
              if (!epoll) return "epoll_create1: " + outcome(-1);
              const UniqueFd event(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
              if (!event) return "eventfd: " + outcome(-1);
              int fds[2];
              if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return "pipe2: " + outcome(-1);
              UniqueFd read_end(fds[0]), write_end(fds[1]);
              for (const int fd : {event.get(), read_end.get()}) {
                epoll_event interest{};
                interest.events = EPOLLIN | EPOLLET;
                interest.data.fd = fd;
                if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &interest) != 0) return "epoll_ctl: " + outcome(-1);
              }
              if (eventfd_write(event.get(), 1) != 0) return "eventfd_write: " + outcome(-1);
              if (write(write_end.get(), "x", 1) != 1) return "write: " + outcome(-1);
              epoll_event ready[4];
              const int count = epoll_wait(epoll.get(), ready, 4, 1000);
              if (count < 0) return "epoll_wait: " + outcome(-1);
              const UniqueFd copy(fcntl(read_end.get(), F_DUPFD_CLOEXEC, 0));
              if (!copy) return "F_DUPFD_CLOEXEC: " + outcome(-1);
              const UniqueFd second(dup(read_end.get()));
              if (!second) return "dup: " + outcome(-1);
              return std::to_string(count) + " ready";
            }),
            "2 ready");
}

TEST(GatewayFilterTest, AnonymousMemoryAndLargeAllocationsWork) {
  EXPECT_EQ(confined([] {
              constexpr std::size_t kSize = 64 << 20;  // above malloc's mmap threshold
              void* page = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              if (page == MAP_FAILED) return "mmap: " + outcome(-1);
              std::memset(page, 1, kSize);
              if (mprotect(page, 4096, PROT_READ) != 0) return "mprotect: " + outcome(-1);
              if (madvise(page, kSize, MADV_DONTNEED) != 0) return "madvise: " + outcome(-1);
              if (munmap(page, kSize) != 0) return "munmap: " + outcome(-1);
              std::vector<char> block(kSize, 'y');
              block.resize(2 * kSize);  // mremap or a new mapping
              return std::string(block[kSize - 1] == 'y' ? "ok" : "wrong contents");
            }),
            "ok");
}

TEST(GatewayFilterTest, AKjEventLoopSetUpBeforeTheFilterRunsAfterIt) {
  // The gateway's order: setupAsyncIo, then the filter, then serving.
  UnixListener listener;
  const std::string path = listener.path;
  EXPECT_EQ(run_child([&path] {
              auto io = kj::setupAsyncIo();
              if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
              std::string result;
              KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                             auto& timer = io.provider->getTimer();
                             timer.afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope);
                             // A pipe in the loop: socketpair plus epoll.
                             auto pipe = io.provider->newTwoWayPipe();
                             auto written = pipe.ends[0]->write("abc", 3);
                             char buffer[3];
                             const size_t n = pipe.ends[1]->tryRead(buffer, 3, 3).wait(io.waitScope);
                             written.wait(io.waitScope);
                             // A unix socket connected through KJ's network, as to a worker.
                             auto& network = io.provider->getNetwork();
                             auto address = network.parseAddress(kj::str("unix:", path.c_str())).wait(io.waitScope);
                             auto stream = address->connect().wait(io.waitScope);
                             stream->write("kj", 2).wait(io.waitScope);
                             stream->shutdownWrite();
                             result = std::string(buffer, n);
                           })) {
                return std::string("threw: ") + exception->getDescription().cStr();
              }
              return result;
            }),
            "abc");
  EXPECT_EQ(listener.first_message(), "kj");
}

TEST(GatewayFilterTest, AKjEventLoopSetUpAfterTheFilterWorksToo) {
  // Not the gateway's order, but nothing in setupAsyncIo needs more than the allowlist.
  EXPECT_EQ(confined([] {
              std::string result;
              KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                             auto io = kj::setupAsyncIo();
                             io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
                             result = "ok";
                           })) {
                return std::string("threw: ") + exception->getDescription().cStr();
              }
              return result;
            }),
            "ok");
}

TEST(GatewayFilterTest, AKjListenerWrappedBeforeTheFilterAcceptsAfterIt) {
  // The SSH and metrics listeners: opened (here by the parent) and wrapped before the filter,
  // accepting after it. An fd wrapped after the filter without KJ's ALREADY_* flags has its
  // modes set by KJ with ioctl(FIONBIO) and ioctl(FIOCLEX).
  UnixListener listener;
  const std::string path = listener.path;
  const int listening = listener.fd.get();
  EXPECT_EQ(run_child([&path, listening] {
              auto io = kj::setupAsyncIo();
              auto receiver = io.lowLevelProvider->wrapListenSocketFd(listening);
              if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
              std::string result;
              KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                             auto& network = io.provider->getNetwork();
                             auto address = network.parseAddress(kj::str("unix:", path.c_str())).wait(io.waitScope);
                             auto client = address->connect().wait(io.waitScope);
                             auto server = receiver->accept().wait(io.waitScope);
                             client->write("via", 3).wait(io.waitScope);
                             char buffer[3];
                             const size_t n = server->tryRead(buffer, 3, 3).wait(io.waitScope);
                             result = std::string(buffer, n);

                             int pair[2];
                             KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
                             constexpr uint kOwned = kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP;
                             auto left = io.lowLevelProvider->wrapSocketFd(pair[0], kOwned);  // FIONBIO, FIOCLEX
                             auto right = io.lowLevelProvider->wrapSocketFd(pair[1], kOwned);
                             left->write(" kj", 3).wait(io.waitScope);
                             const size_t m = right->tryRead(buffer, 3, 3).wait(io.waitScope);
                             result += std::string(buffer, m);
                           })) {
                return std::string("threw: ") + exception->getDescription().cStr();
              }
              return result;
            }),
            "via kj");
}

// ---------------------------------------------------------------------------------------------
// The probe library (for LD_PRELOAD into a running gateway) works as documented

enum class Filter { kInstalled, kNone };

// Loads the probe with PGOD_PROBE_SYSCALL=`name`, installs the filter, raises SIGUSR2 and
// returns what the probe wrote on stderr, or how the child died.
std::string probe(const char* name, Filter filter = Filter::kInstalled) {
  return run_child([name, filter] {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return "pipe2: " + outcome(-1);
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    if (dup2(write_end.get(), STDERR_FILENO) < 0) return "dup2: " + outcome(-1);
    if (setenv("PGOD_PROBE_SYSCALL", name, 1) != 0) return "setenv: " + outcome(-1);
    if (dlopen(PGOD_SYSCALL_PROBE_PATH, RTLD_NOW) == nullptr) return std::string("dlopen: ") + dlerror();
    if (filter == Filter::kInstalled) {
      if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
    }
    if (raise(SIGUSR2) != 0) return "raise: " + outcome(-1);
    char buffer[256];
    const ssize_t n = read(read_end.get(), buffer, sizeof buffer);
    return n < 0 ? "read: " + outcome(-1) : std::string(buffer, static_cast<std::size_t>(n));
  });
}

TEST(GatewayFilterTest, TheSyscallProbeDiesOrReportsInsideTheFilter) {
  for (const char* name : {"execve", "fork", "socket_inet", "mmap_exec"}) EXPECT_EQ(probe(name), kKilled) << name;
  EXPECT_EQ(probe("openat"), "probe: armed for openat\nprobe: openat errno=" + std::to_string(EACCES) + "\n");
}

TEST(GatewayFilterTest, TheSyscallProbeReportsACallThatWasNotStopped) {
  // Without the filter: the probe must say so, or a missing confinement would look like success.
  const std::string said = probe("socket_inet", Filter::kNone);
  EXPECT_TRUE(said.starts_with("probe: armed for socket_inet\nprobe: socket(AF_INET) was not stopped: rc=")) << said;
}

}  // namespace
}  // namespace pgod::gateway::test
