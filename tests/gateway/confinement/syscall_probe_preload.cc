// A probe to load into a running pgod-gateway (LD_PRELOAD) to show its confinement from inside
// it: on SIGUSR2 the process makes the forbidden call named by PGOD_PROBE_SYSCALL, read when the
// library loads. A confined gateway dies of SIGSYS (or, for openat, reports EACCES on stderr);
// a gateway that survives the call says so on stderr, so a missing confinement cannot pass
// unnoticed. Test-only: never linked into a product.
//
//   PGOD_PROBE_SYSCALL=execve       execve("/bin/true")
//   PGOD_PROBE_SYSCALL=fork         clone without CLONE_THREAD (what fork does)
//   PGOD_PROBE_SYSCALL=socket_inet  socket(AF_INET, SOCK_STREAM)
//   PGOD_PROBE_SYSCALL=mmap_exec    an anonymous PROT_READ|PROT_EXEC mapping
//   PGOD_PROBE_SYSCALL=openat       openat("/etc/passwd"), then "probe: openat errno=N" on stderr
//
// The library says "probe: armed for NAME" on stderr once loaded, so a test can wait for it.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace {

enum class Probe { kNone, kExecve, kFork, kSocketInet, kMmapExec, kOpenat };

// Written once by the constructor, before the handler can run.
Probe chosen = Probe::kNone;

// Async-signal-safe output: write(2) only, no allocation, no stdio.
void say(const char* text) {
  std::size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = write(STDERR_FILENO, text, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

void say_number(long value) {
  char digits[24];
  char* end = digits + sizeof digits;
  char* at = end;
  *--at = '\0';
  const bool negative = value < 0;
  unsigned long magnitude = negative ? 0UL - static_cast<unsigned long>(value) : static_cast<unsigned long>(value);
  do {
    *--at = static_cast<char>('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude != 0 && at > digits + 1);
  if (negative) *--at = '-';
  say(at);
}

// Only reached when the call was not stopped: the confinement is missing.
void survived(const char* what, long rc, int error) {
  say("probe: ");
  say(what);
  say(" was not stopped: rc=");
  say_number(rc);
  say(" errno=");
  say_number(error);
  say("\n");
}

void on_sigusr2(int) {
  const int saved_errno = errno;
  switch (chosen) {
    case Probe::kNone:
      break;
    case Probe::kExecve: {
      char path[] = "/bin/true";
      char* const argv[] = {path, nullptr};
      char* const envp[] = {nullptr};
      const long rc = execve(path, argv, envp);
      survived("execve", rc, errno);
      break;
    }
    case Probe::kFork: {
      // Raw, so that no atfork handler of the host process runs in a signal handler.
      const long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
      if (pid == 0) _exit(0);
      survived("fork", pid, errno);
      break;
    }
    case Probe::kSocketInet: {
      const long fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      survived("socket(AF_INET)", fd, errno);
      if (fd >= 0) close(static_cast<int>(fd));
      break;
    }
    case Probe::kMmapExec: {
      void* page = mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      survived("mmap(PROT_EXEC)", page == MAP_FAILED ? -1 : 0, errno);
      if (page != MAP_FAILED) munmap(page, 4096);
      break;
    }
    case Probe::kOpenat: {
      const int fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
      say("probe: openat errno=");
      say_number(fd >= 0 ? 0 : errno);
      say("\n");
      if (fd >= 0) close(fd);
      break;
    }
  }
  errno = saved_errno;
}

struct Named {
  const char* name;
  Probe probe;
};
constexpr Named kProbes[] = {{"execve", Probe::kExecve},
                             {"fork", Probe::kFork},
                             {"socket_inet", Probe::kSocketInet},
                             {"mmap_exec", Probe::kMmapExec},
                             {"openat", Probe::kOpenat}};

__attribute__((constructor)) void arm() {
  const char* wanted = std::getenv("PGOD_PROBE_SYSCALL");
  if (wanted == nullptr) {
    say("probe: PGOD_PROBE_SYSCALL is not set: not armed\n");
    return;
  }
  for (const auto& [name, probe] : kProbes) {
    if (std::strcmp(wanted, name) == 0) chosen = probe;
  }
  if (chosen == Probe::kNone) {
    say("probe: unknown PGOD_PROBE_SYSCALL (execve, fork, socket_inet, mmap_exec, openat): not armed\n");
    return;
  }
  struct sigaction action {};
  action.sa_handler = on_sigusr2;
  action.sa_flags = SA_RESTART;
  if (sigemptyset(&action.sa_mask) != 0 || sigaction(SIGUSR2, &action, nullptr) != 0) {
    say("probe: sigaction(SIGUSR2) failed: not armed\n");
    chosen = Probe::kNone;
    return;
  }
  say("probe: armed for ");
  say(wanted);
  say("\n");
}

}  // namespace
